"""Domain errors of the tenants app (subclasses of :mod:`core.errors`); the one handler renders them."""

from __future__ import annotations

from core.errors import AuthenticationError, BackendUnavailable, DomainError, Forbidden


class ApiKeyExpired(AuthenticationError):
    code, title = "api_key_expired", "API key expired"


class ApiKeyRevoked(AuthenticationError):
    code, title = "api_key_revoked", "API key revoked"


class TenantSuspended(Forbidden):
    code, title = "tenant_suspended", "Tenant suspended"


class InsufficientScope(Forbidden):
    code, title = "insufficient_scope", "Insufficient scope"


class QuotaExceeded(DomainError):
    status, code, title = 429, "quota_exceeded", "Quota exceeded"


class QuotaBackendUnavailable(BackendUnavailable):
    code, title = "quota_backend_unavailable", "Quota backend unavailable"
