"""Request context: the request id, the access log line and the last error net.

Runs first in the middleware stack so that everything after it (including
Django's own error pages) sees the request id, and so that any non-problem
error response produced by Django or a third-party view is rewritten into a
problem document on the API surface.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from audit.errors import AuditUnavailable
from core.errors import (
    PROBLEM_CONTENT_TYPE,
    CredentialsInUrl,
    exception_to_response,
    problem_response,
    status_code_and_title,
)
from core.logging import current_tenant_slug, request_context_reset, set_request_context
from core.sanitize import credentials_in_query, text_for_record
from gateway import metrics
from gateway.error_pages import exception_response, html_error_page, wants_problem

access_log = logging.getLogger("gateway.access")

REQUEST_ID_HEADER = "X-Request-ID"
# Accept a client's id only when it is short and harmless in logs and headers.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{8,128}$")


def request_id_from(request: HttpRequest) -> str:
    """The client's ``X-Request-ID`` when well-formed, otherwise a fresh one."""
    supplied = request.META.get("HTTP_X_REQUEST_ID", "")
    if supplied and _REQUEST_ID_RE.match(supplied):
        return supplied
    return uuid.uuid4().hex


def credentials_in_url_refuse(request: HttpRequest) -> HttpResponse:
    """400 ``credentials_in_url`` for a key in the query string, audited with the key redacted.

    A query string ends up in proxy logs, browser history and ``Referer``
    headers: a key sent there must be treated as leaked, so it is refused
    before any view (or authentication) sees it, and the client is told to
    rotate it.
    """
    from audit.services import audit_event_record
    from gateway.pipeline import client_ip

    error = CredentialsInUrl(
        "Send the API key in the Authorization or X-API-Key header, never in the URL; "
        "treat a key that was sent in a URL as leaked and rotate it."
    )
    try:
        audit_event_record(
            event_type="request",
            action="credentials_in_url",
            request_id=getattr(request, "request_id", ""),
            method=text_for_record(request.method or "", max_length=8),
            path=text_for_record(request.path, max_length=300),
            http_status=error.status,
            client_ip=client_ip(request),
            error_code=error.code,
            detail={"query": text_for_record(request.META.get("QUERY_STRING", ""), max_length=1000)},
        )
    except AuditUnavailable as exc:
        return exception_to_response(exc)
    return exception_to_response(error)


def _rewrites_errors(request: HttpRequest) -> bool:
    return not request.path.startswith("/static")


class RequestContextMiddleware:
    """Assigns the request id, logs one JSON line per request, never leaks a traceback."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        request_id = request_id_from(request)
        request.request_id = request_id  # type: ignore[attr-defined]
        set_request_context(request_id=request_id, tenant="")
        try:
            return self._handle(request, request_id, started)
        finally:
            # The context variables outlive the request in this thread: the next one must not inherit them.
            request_context_reset()

    def _handle(self, request: HttpRequest, request_id: str, started: float) -> HttpResponse:
        try:
            if credentials_in_query(request.META.get("QUERY_STRING", "")):
                response = credentials_in_url_refuse(request)
            else:
                response = self.get_response(request)
        except Exception as exc:  # the last net: map, log, never re-raise to the server
            response = exception_response(request, exc)
        if response.status_code >= 400 and _rewrites_errors(request):
            response = (
                self._as_problem(request, response) if wants_problem(request) else self._as_page(request, response)
            )
        response[REQUEST_ID_HEADER] = request_id
        latency_ms = (time.perf_counter() - started) * 1000.0
        match = getattr(request, "resolver_match", None)
        metrics.request_done(
            endpoint=match.route if match is not None else "unmatched",
            status=response.status_code,
            tenant=current_tenant_slug(),
            seconds=latency_ms / 1000.0,
        )
        if access_log.isEnabledFor(logging.INFO):
            self._log(request, response, request_id, latency_ms)
        return response

    @staticmethod
    def _log(request: HttpRequest, response: HttpResponse, request_id: str, latency_ms: float) -> None:
        """The access line, as ``access_log.info`` writes it minus the caller lookup it would do for nothing.

        ``Logger.info`` walks the stack to name the calling function and line,
        which no formatter here prints; building the record and handing it to
        the logger's handlers directly skips that walk on every request.
        """
        extra = {
            "method": text_for_record(request.method or "", max_length=16),
            # Escaped and with keys redacted: the access log is read by more people than the audit trail.
            "path": text_for_record(request.path, max_length=2048),
            "status": response.status_code,
            "latency_ms": round(latency_ms, 3),
            "tenant": current_tenant_slug(),
            "request_id": request_id,
        }
        access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, "", 0, "request", (), None, extra=extra))

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse:
        """Exceptions raised by plain Django views become problem documents (or pages, for people) too."""
        return exception_response(request, exception)

    @staticmethod
    def _as_page(request: HttpRequest, response: HttpResponse) -> HttpResponse:
        """A person gets an HTML page; a problem document produced deeper down becomes one."""
        if not response.get("Content-Type", "").startswith(PROBLEM_CONTENT_TYPE):
            return response
        try:
            detail = json.loads(response.content).get("detail")
        except (ValueError, AttributeError):
            detail = None
        page = html_error_page(request, response.status_code, detail=detail if response.status_code < 500 else None)
        for name in ("Allow", "Retry-After"):
            if response.has_header(name):
                page[name] = response[name]
        return page

    @staticmethod
    def _as_problem(request: HttpRequest, response: HttpResponse) -> HttpResponse:
        content_type = response.get("Content-Type", "")
        if content_type.startswith(PROBLEM_CONTENT_TYPE) or getattr(response, "is_v2_error", False):
            return response
        code, title = status_code_and_title(response.status_code)
        detail = title + "."
        if response.status_code == 405:
            allowed = response.get("Allow", "")
            detail = f"Method {request.method} is not allowed here" + (f"; allowed: {allowed}." if allowed else ".")
        headers = {k: response[k] for k in ("Allow", "Retry-After", "WWW-Authenticate") if response.has_header(k)}
        return problem_response(status=response.status_code, code=code, title=title, detail=detail, headers=headers)
