"""The domain-error hierarchy and the one handler that renders every error.

Services raise :class:`DomainError` subclasses; they never build responses.
:func:`problem_exception_handler` (DRF) and :func:`problem_response` (plain
Django views, 404/500 handlers) turn domain errors, DRF errors and Django's
``Http404``/``PermissionDenied`` into ``application/problem+json`` (RFC 9457)
with a stable ``code`` and the request id.  Unknown exceptions are logged with
their traceback and answered as a bare 500 problem: no traceback ever reaches
a client.

This module holds the base class and the generic HTTP errors only; each app
owns its domain errors in ``<app>/errors.py`` (``inference.errors.ModelNotFound``,
``tenants.errors.QuotaExceeded``, ``jobs.errors.JobNotFound``...).  Codes and
titles always come from the classes: :data:`STATUS_ERRORS` (bare statuses) and
the DRF mapping point at classes, never at literal strings.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions as drf_exceptions

from core.logging import current_request_id

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


# --- 403 ---------------------------------------------------------------------
class Forbidden(DomainError):
    status, code, title = 403, "forbidden", "Forbidden"


# --- 404 / 405 / 409 / 413 / 415 ----------------------------------------------
class NotFound(DomainError):
    status, code, title = 404, "not_found", "Not found"


class MethodNotAllowed(DomainError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"


class Conflict(DomainError):
    status, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(DomainError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class NotAcceptable(DomainError):
    status, code, title = 406, "not_acceptable", "Not acceptable"


class UnsupportedMediaType(DomainError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


# --- 429 ---------------------------------------------------------------------
class RateLimited(DomainError):
    status, code, title = 429, "rate_limited", "Rate limit exceeded"


class AuthenticationThrottled(RateLimited):
    code, title = "authentication_throttled", "Too many failed authentications"


# --- 5xx ---------------------------------------------------------------------
class InternalError(DomainError):
    """Never raised on purpose: the code and title of an unexpected failure."""

    status, code, title = 500, "internal_error", "Internal server error"


class BackendUnavailable(DomainError):
    status, code, title = 503, "backend_unavailable", "Service temporarily unavailable"

    def __init__(self, detail: str | None = None, **kwargs: Any):
        super().__init__(detail, **kwargs)
        self.headers.setdefault("Retry-After", "1")


class DatabaseUnavailable(BackendUnavailable):
    code, title = "database_unavailable", "Database unavailable"


class BrokerUnavailable(BackendUnavailable):
    code, title = "broker_unavailable", "Job queue unavailable"


# DRF's own exceptions, rendered with the code and title of the matching domain error class.
_DRF_ERRORS: dict[type, type[DomainError]] = {
    drf_exceptions.ParseError: MalformedRequest,
    drf_exceptions.ValidationError: ValidationFailed,
    drf_exceptions.NotAuthenticated: MissingApiKey,
    drf_exceptions.AuthenticationFailed: InvalidApiKey,
    drf_exceptions.PermissionDenied: Forbidden,
    drf_exceptions.NotFound: NotFound,
    drf_exceptions.MethodNotAllowed: MethodNotAllowed,
    drf_exceptions.NotAcceptable: NotAcceptable,
    drf_exceptions.UnsupportedMediaType: UnsupportedMediaType,
    drf_exceptions.Throttled: RateLimited,
}

# The one status table: a bare error status (a response no domain error produced, e.g. Django's own
# 404 or 405) rendered with the code and title of the generic error class for that status.
STATUS_ERRORS: dict[int, type[DomainError]] = {
    cls.status: cls
    for cls in (
        DomainError,
        AuthenticationError,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        PayloadTooLarge,
        UnsupportedMediaType,
    )
}


def status_code_and_title(status: int) -> tuple[str, str]:
    """The problem ``code`` and ``title`` for a bare HTTP error status, from :data:`STATUS_ERRORS`."""
    error = STATUS_ERRORS.get(status) or (InternalError if status >= 500 else None)
    return (error.code, error.title) if error is not None else ("error", "Error")


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


def flattened_validation_errors(detail: Any) -> list[str]:
    """A serializer's nested errors as ``field: message`` lines (the ``detail`` of a 400)."""
    return _flatten_validation(detail)


def error_status_code(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and stable ``code`` that ``exception_to_response`` answers ``exc`` with (for records)."""
    if isinstance(exc, DomainError):
        return exc.status, exc.code
    if isinstance(exc, drf_exceptions.APIException):
        error = next((v for cls, v in _DRF_ERRORS.items() if isinstance(exc, cls)), None)
        return exc.status_code, error.code if error is not None else "error"
    if isinstance(exc, Http404):
        return 404, NotFound.code
    if isinstance(exc, PermissionDenied):
        return 403, Forbidden.code
    return 500, InternalError.code


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
        error = next((v for cls, v in _DRF_ERRORS.items() if isinstance(exc, cls)), None)
        code, title = (error.code, error.title) if error is not None else ("error", "Error")
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
        return problem_response(status=404, code=NotFound.code, title=NotFound.title, detail="Not found.")
    if isinstance(exc, PermissionDenied):
        return problem_response(status=403, code=Forbidden.code, title=Forbidden.title, detail="Forbidden.")
    logger.error("unhandled exception", exc_info=exc)
    return problem_response(
        status=500,
        code=InternalError.code,
        title=InternalError.title,
        detail="An unexpected error occurred; quote the request id when reporting it.",
    )


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse:
    """DRF ``EXCEPTION_HANDLER``: every API error becomes a problem document."""
    return exception_to_response(exc)


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Root 404 handler: unknown paths get a problem document, never an HTML page."""
    return problem_response(
        status=404, code=NotFound.code, title=NotFound.title, detail=f"No resource at {request.path}."
    )


def handler500(request: HttpRequest) -> HttpResponse:
    """Root 500 handler, reached only when something escaped every other layer."""
    return problem_response(
        status=500,
        code=InternalError.code,
        title=InternalError.title,
        detail="An unexpected error occurred; quote the request id when reporting it.",
    )


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Root 400 handler (e.g. a disallowed Host header)."""
    return problem_response(status=400, code=DomainError.code, title=DomainError.title, detail="Bad request.")


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Root 403 handler."""
    return problem_response(status=403, code=Forbidden.code, title=Forbidden.title, detail="Forbidden.")
