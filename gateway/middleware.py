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

from gateway import metrics
from gateway.error_pages import exception_response, html_error_page, wants_problem
from gateway.errors import PROBLEM_CONTENT_TYPE, problem_response
from gateway.logging import current_tenant_slug, set_request_context

access_log = logging.getLogger("gateway.access")

REQUEST_ID_HEADER = "X-Request-ID"
# Accept a client's id only when it is short and harmless in logs and headers.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{8,128}$")
_STATUS_TITLES = {
    400: ("bad_request", "Bad request"),
    401: ("authentication_failed", "Authentication failed"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}


def request_id_from(request: HttpRequest) -> str:
    """The client's ``X-Request-ID`` when well-formed, otherwise a fresh one."""
    supplied = request.META.get("HTTP_X_REQUEST_ID", "")
    if supplied and _REQUEST_ID_RE.match(supplied):
        return supplied
    return uuid.uuid4().hex


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
        access_log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "latency_ms": round(latency_ms, 3),
                "tenant": current_tenant_slug(),
                "request_id": request_id,
            },
        )
        return response

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
        code, title = _STATUS_TITLES.get(
            response.status_code,
            ("internal_error", "Internal server error") if response.status_code >= 500 else ("error", "Error"),
        )
        detail = title + "."
        if response.status_code == 405:
            allowed = response.get("Allow", "")
            detail = f"Method {request.method} is not allowed here" + (f"; allowed: {allowed}." if allowed else ".")
        headers = {k: response[k] for k in ("Allow", "Retry-After", "WWW-Authenticate") if response.has_header(k)}
        return problem_response(status=response.status_code, code=code, title=title, detail=detail, headers=headers)
