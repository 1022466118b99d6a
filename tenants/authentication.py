"""DRF authentication and scope permission for API-key endpoints.

``ApiKeyAuthentication`` wraps ``api_key_authenticate_request`` (the same
service the inference pipeline calls): ``request.auth`` is the ``Principal``,
``request.user`` a small ``ApiKeyUser``.  It raises the gateway's domain
errors itself (``missing_api_key``, ``invalid_api_key``, ``api_key_expired``,
``api_key_revoked``, ``tenant_suspended``) instead of DRF's generic ones, so
every client sees the same codes on every endpoint.

``HasScope("usage:read")`` is used as an entry of ``permission_classes``
(it returns itself when DRF instantiates it) and raises
``InsufficientScope`` (403 ``insufficient_scope``) naming the missing scope,
through ``principal_require_scope``, again shared with the pipeline.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from core.errors import MissingApiKey
from core.logging import set_request_context
from tenants.principal import Principal
from tenants.services import api_key_authenticate_request, principal_require_scope

PRINCIPAL_ATTRIBUTE = "maas_principal"


class ApiKeyUser:
    """``request.user`` for API-key requests: authenticated, never staff, named by key prefix."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def __init__(self, principal: Principal):
        self.principal = principal
        self.username = principal.actor

    def __str__(self) -> str:
        return self.username


def principal_of(request: Request | HttpRequest) -> Principal | None:
    """The request's principal if authentication already succeeded, without re-running it."""
    http_request = getattr(request, "_request", request)
    return getattr(http_request, PRINCIPAL_ATTRIBUTE, None)


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; raises domain errors on failure."""

    def authenticate(self, request: Request) -> tuple[ApiKeyUser, Principal]:
        """Return ``(ApiKeyUser, Principal)`` or raise a 401/403 domain error."""
        principal = api_key_authenticate_request(meta=request._request.META)
        setattr(request._request, PRINCIPAL_ATTRIBUTE, principal)
        set_request_context(tenant=principal.tenant_slug)
        return ApiKeyUser(principal), principal

    def authenticate_header(self, request: Request) -> str:
        """The ``WWW-Authenticate`` challenge (makes DRF answer 401, not 403, when unauthenticated)."""
        return 'Bearer realm="maas"'


class HasScope(BasePermission):
    """Require one scope on the calling key: ``permission_classes = [HasScope("usage:read")]``."""

    def __init__(self, scope: str):
        self.scope = scope

    def __call__(self) -> HasScope:
        # DRF instantiates each entry of permission_classes; an instance answers for itself.
        return self

    def has_permission(self, request: Request, view: Any) -> bool:
        """True when the key has the scope; raises ``InsufficientScope`` (403) otherwise."""
        principal = request.auth
        if not isinstance(principal, Principal):
            raise MissingApiKey("This endpoint needs an API key.")
        principal_require_scope(principal=principal, scope=self.scope)
        return True

    def __repr__(self) -> str:
        return f"HasScope({self.scope!r})"
