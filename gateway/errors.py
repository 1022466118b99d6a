"""The domain-error hierarchy and the one handler that renders every error.

Services raise :class:`DomainError` subclasses; they never build responses.
:func:`problem_exception_handler` (DRF) and :func:`problem_response` (plain
Django views, 404/500 handlers) turn domain errors, DRF errors and Django's
``Http404``/``PermissionDenied`` into ``application/problem+json`` (RFC 9457)
with a stable ``code`` and the request id.  Unknown exceptions are logged with
their traceback and answered as a bare 500 problem: no traceback ever reaches
a client.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions as drf_exceptions

from gateway.logging import current_request_id

logger = logging.getLogger("gateway.errors")

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://maas.example/problems/"


class DomainError(Exception):
    """Base of every error a service may raise; ``status`` and ``code`` are stable API."""

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any):
        self.detail = detail or self.title
        self.headers = dict(headers or {})
        self.extra = extra
        super().__init__(self.detail)


# --- 400 ---------------------------------------------------------------------
class InvalidInput(DomainError):
    status, code, title = 400, "invalid_input", "Invalid input"


class MalformedRequest(DomainError):
    status, code, title = 400, "malformed_request", "Malformed request"


class CredentialsInUrl(DomainError):
    status, code, title = 400, "credentials_in_url", "Credentials in the URL"


class ValidationFailed(DomainError):
    status, code, title = 400, "validation_error", "Validation failed"


# --- 401 ---------------------------------------------------------------------
class AuthenticationError(DomainError):
    status, code, title = 401, "authentication_failed", "Authentication failed"

    def __init__(self, detail: str | None = None, **kwargs: Any):
        super().__init__(detail, **kwargs)
        self.headers.setdefault("WWW-Authenticate", 'Bearer realm="maas"')


class MissingApiKey(AuthenticationError):
    code, title = "missing_api_key", "API key required"


class InvalidApiKey(AuthenticationError):
    code, title = "invalid_api_key", "Invalid API key"


class ApiKeyExpired(AuthenticationError):
    code, title = "api_key_expired", "API key expired"


class ApiKeyRevoked(AuthenticationError):
    code, title = "api_key_revoked", "API key revoked"


# --- 403 ---------------------------------------------------------------------
class Forbidden(DomainError):
    status, code, title = 403, "forbidden", "Forbidden"


class TenantSuspended(Forbidden):
    code, title = "tenant_suspended", "Tenant suspended"


class InsufficientScope(Forbidden):
    code, title = "insufficient_scope", "Insufficient scope"


class PolicyDenied(Forbidden):
    code, title = "policy_denied", "Denied by policy"


# --- 404 / 405 / 409 / 413 / 415 ----------------------------------------------
class NotFound(DomainError):
    status, code, title = 404, "not_found", "Not found"


class ModelNotFound(NotFound):
    code, title = "model_not_found", "Model not found"


class ModelVersionNotFound(NotFound):
    code, title = "model_version_not_found", "Model version not found"


class JobNotFound(NotFound):
    code, title = "job_not_found", "Job not found"


class MethodNotAllowed(DomainError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"


class Conflict(DomainError):
    status, code, title = 409, "conflict", "Conflict"


class IdempotencyKeyReused(Conflict):
    code, title = "idempotency_key_reused", "Idempotency key reused"


class PayloadTooLarge(DomainError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class UnsupportedMediaType(DomainError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


# --- 429 ---------------------------------------------------------------------
class RateLimited(DomainError):
    status, code, title = 429, "rate_limited", "Rate limit exceeded"


class AuthenticationThrottled(RateLimited):
    code, title = "authentication_throttled", "Too many failed authentications"


class QuotaExceeded(DomainError):
    status, code, title = 429, "quota_exceeded", "Quota exceeded"


class TooManyJobs(DomainError):
    status, code, title = 429, "too_many_jobs", "Too many concurrent jobs"


# --- 5xx ---------------------------------------------------------------------
class BackendUnavailable(DomainError):
    status, code, title = 503, "backend_unavailable", "Service temporarily unavailable"

    def __init__(self, detail: str | None = None, **kwargs: Any):
        super().__init__(detail, **kwargs)
        self.headers.setdefault("Retry-After", "1")


class QuotaBackendUnavailable(BackendUnavailable):
    code, title = "quota_backend_unavailable", "Quota backend unavailable"


class PolicyUnavailable(BackendUnavailable):
    code, title = "policy_unavailable", "Policy state unavailable"


class AuditUnavailable(BackendUnavailable):
    code, title = "audit_unavailable", "Audit trail unavailable"


class DatabaseUnavailable(BackendUnavailable):
    code, title = "database_unavailable", "Database unavailable"


class BrokerUnavailable(BackendUnavailable):
    code, title = "broker_unavailable", "Job queue unavailable"


class ModelUnavailable(BackendUnavailable):
    code, title = "model_unavailable", "Model unavailable"


_DRF_CODES: dict[type, tuple[str, str]] = {
    drf_exceptions.ParseError: ("malformed_request", "Malformed request"),
    drf_exceptions.ValidationError: ("validation_error", "Validation failed"),
    drf_exceptions.NotAuthenticated: ("missing_api_key", "API key required"),
    drf_exceptions.AuthenticationFailed: ("invalid_api_key", "Invalid API key"),
    drf_exceptions.PermissionDenied: ("forbidden", "Forbidden"),
    drf_exceptions.NotFound: ("not_found", "Not found"),
    drf_exceptions.MethodNotAllowed: ("method_not_allowed", "Method not allowed"),
    drf_exceptions.NotAcceptable: ("not_acceptable", "Not acceptable"),
    drf_exceptions.UnsupportedMediaType: ("unsupported_media_type", "Unsupported media type"),
    drf_exceptions.Throttled: ("rate_limited", "Rate limit exceeded"),
}


def problem_body(
    *, status: int, code: str, title: str, detail: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Build the RFC 9457 body with the gateway's stable extension members."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": current_request_id(),
    }
    if extra:
        for key, value in extra.items():
            body.setdefault(key, value)
    return body


def problem_response(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> HttpResponse:
    """A ``JsonResponse`` carrying a problem document and any protocol headers."""
    response = JsonResponse(
        problem_body(status=status, code=code, title=title, detail=detail, extra=extra),
        status=status,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _flatten_validation(detail: Any, prefix: str = "") -> list[str]:
    if isinstance(detail, dict):
        out: list[str] = []
        for key, value in detail.items():
            out.extend(_flatten_validation(value, f"{prefix}{key}." if key != "non_field_errors" else prefix))
        return out
    if isinstance(detail, list):
        out = []
        for index, value in enumerate(detail):
            nested = isinstance(value, dict | list)
            out.extend(_flatten_validation(value, f"{prefix}{index}." if nested else prefix))
        return out
    return [f"{prefix.rstrip('.')}: {detail}" if prefix else str(detail)]


def exception_to_response(exc: BaseException) -> HttpResponse:
    """Map any exception to a problem response; the single mapping used everywhere."""
    if isinstance(exc, DomainError):
        return problem_response(
            status=exc.status,
            code=exc.code,
            title=exc.title,
            detail=exc.detail,
            headers=exc.headers,
            extra=exc.extra,
        )
    if isinstance(exc, drf_exceptions.APIException):
        code, title = next((v for cls, v in _DRF_CODES.items() if isinstance(exc, cls)), ("error", "Error"))
        headers: dict[str, str] = {}
        if isinstance(exc, drf_exceptions.ValidationError):
            messages = _flatten_validation(exc.detail)
            detail = "; ".join(messages)
            extra: dict[str, Any] | None = {"errors": exc.detail}
        else:
            detail = str(exc.detail)
            extra = None
        wait = getattr(exc, "wait", None)
        if wait is not None:
            headers["Retry-After"] = str(int(wait) + 1)
        if exc.status_code == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="maas"'
        return problem_response(
            status=exc.status_code, code=code, title=title, detail=detail, headers=headers, extra=extra
        )
    if isinstance(exc, Http404):
        return problem_response(status=404, code="not_found", title="Not found", detail="Not found.")
    if isinstance(exc, PermissionDenied):
        return problem_response(status=403, code="forbidden", title="Forbidden", detail="Forbidden.")
    logger.error("unhandled exception", exc_info=exc)
    return problem_response(
        status=500,
        code="internal_error",
        title="Internal server error",
        detail="An unexpected error occurred; quote the request id when reporting it.",
    )


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse:
    """DRF ``EXCEPTION_HANDLER``: every API error becomes a problem document."""
    return exception_to_response(exc)


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Root 404 handler: unknown paths get a problem document, never an HTML page."""
    return problem_response(status=404, code="not_found", title="Not found", detail=f"No resource at {request.path}.")


def handler500(request: HttpRequest) -> HttpResponse:
    """Root 500 handler, reached only when something escaped every other layer."""
    return problem_response(
        status=500,
        code="internal_error",
        title="Internal server error",
        detail="An unexpected error occurred; quote the request id when reporting it.",
    )


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Root 400 handler (e.g. a disallowed Host header)."""
    return problem_response(status=400, code="bad_request", title="Bad request", detail="Bad request.")


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Root 403 handler."""
    return problem_response(status=403, code="forbidden", title="Forbidden", detail="Forbidden.")
