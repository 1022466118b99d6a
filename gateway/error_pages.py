"""Errors by audience: problem documents for API clients, admin-styled HTML pages for people.

API clients (``/v1``, ``/v2``, ``/metrics``, health probes, or anything that
asks for JSON) always get ``application/problem+json`` from
:mod:`core.errors`.  Everything under ``/admin/`` and any other browser
navigation (``Accept`` naming ``text/html``) gets a page in the admin's look
with the request id and a way back instead of a raw JSON document.  The root
``handler*`` names in ``gateway.urls`` and the request middleware both decide
through :func:`wants_problem`, so the two paths cannot disagree.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.loader import render_to_string

from core import errors
from core.logging import current_request_id

logger = logging.getLogger("gateway.errors")

# Machine surfaces: their errors are part of the API contract whatever the client accepts.
API_PREFIXES = ("/v1/", "/v2", "/metrics", "/healthz", "/readyz")
# Human pages living under an API prefix.
_HUMAN_PREFIXES = ("/v1/docs/",)
_JSON_TYPES = ("application/json", "application/problem+json", "+json")

_PAGES: dict[int, tuple[str, str]] = {
    400: ("Bad request", "The request could not be understood."),
    403: ("Access denied", "Your account does not have permission to open this page."),
    404: ("Page not found", "There is nothing at this address. It may have been removed, or the link is wrong."),
    405: ("Method not allowed", "This page does not accept that kind of request."),
    500: ("Something went wrong", "An unexpected error occurred. Quote the request id below when reporting it."),
}


def wants_problem(request: HttpRequest) -> bool:
    """True when ``request`` should get a problem document rather than an HTML page."""
    path = request.path
    accept = request.META.get("HTTP_ACCEPT", "")
    asks_json = any(kind in accept for kind in _JSON_TYPES) and "text/html" not in accept
    if path.startswith("/admin") or path.startswith(_HUMAN_PREFIXES):
        # People by default; a script that explicitly asks for JSON (e.g. fetching a manifest) gets a problem.
        return asks_json
    if path.startswith(API_PREFIXES) or asks_json:
        return True
    return "text/html" not in accept


def html_error_page(request: HttpRequest, status: int, *, detail: str | None = None) -> HttpResponse:
    """An admin-styled error page with the request id and links back; never touches the database."""
    title, default_detail = _PAGES.get(status, ("Error", "The request failed."))
    user = getattr(request, "user", None)
    in_admin = request.path.startswith("/admin")
    context = {
        "status": status,
        "title": title,
        "detail": detail or default_detail,
        "request_id": getattr(request, "request_id", "") or current_request_id(),
        "path": request.path,
        "in_admin": in_admin,
        "is_staff": bool(user is not None and getattr(user, "is_staff", False)),
        "back_url": _same_site_referer(request),
        "site_header": "MaaS Gateway administration",
        "site_title": "MaaS Gateway",
    }
    try:
        content = render_to_string("errors/page.html", context, request=None)
    except Exception:  # the error page must never fail itself: a plain page is better than none
        logger.exception("error page template failed")
        content = (
            f"<h1>{status} {title}</h1><p>Request id: {context['request_id']}</p><p><a href='/admin/'>Admin</a></p>"
        )
    return HttpResponse(content, status=status, content_type="text/html; charset=utf-8")


def _same_site_referer(request: HttpRequest) -> str:
    """The previous page when it is on this site (never an open redirect to another origin)."""
    referer = request.META.get("HTTP_REFERER", "")
    try:
        origin = f"{request.scheme}://{request.get_host()}/"
    except Exception:  # a disallowed Host header: no link back
        return ""
    return referer if referer.startswith(origin) and referer != request.build_absolute_uri() else ""


def exception_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """The response for an exception that escaped a view, in the form its audience reads."""
    if wants_problem(request):
        if isinstance(exc, Http404):
            return errors.handler404(request, exc)
        return errors.exception_to_response(exc)
    if isinstance(exc, Http404):
        return html_error_page(request, 404)
    if isinstance(exc, PermissionDenied):
        return html_error_page(request, 403)
    status = getattr(exc, "status", None)
    if isinstance(exc, errors.DomainError) and isinstance(status, int) and status < 500:
        return html_error_page(request, status, detail=exc.detail)
    if not isinstance(exc, errors.DomainError):
        logger.error("unhandled exception", exc_info=exc)
    return html_error_page(request, 500)


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Root 400 handler."""
    return errors.handler400(request, exception) if wants_problem(request) else html_error_page(request, 400)


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Root 403 handler."""
    return errors.handler403(request, exception) if wants_problem(request) else html_error_page(request, 403)


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Root 404 handler."""
    return errors.handler404(request, exception) if wants_problem(request) else html_error_page(request, 404)


def handler500(request: HttpRequest) -> HttpResponse:
    """Root 500 handler."""
    return errors.handler500(request) if wants_problem(request) else html_error_page(request, 500)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """``CSRF_FAILURE_VIEW``: a form sent without a valid token (usually an expired page or session)."""
    if wants_problem(request):
        return errors.problem_response(
            status=403, code="csrf_failed", title="CSRF verification failed", detail="CSRF verification failed."
        )
    return html_error_page(
        request,
        403,
        detail="The form could not be accepted because its security token is missing or expired "
        "(for example after signing in again in another tab). Go back, reload the page and submit it again.",
    )
