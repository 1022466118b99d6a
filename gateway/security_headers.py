"""Security headers at a small cost: the CSP built once per policy, the API's headers in one layer.

django-csp's middleware rebuilds both policies (enforced and report-only)
from settings on every response: two ``dataclasses.asdict`` calls, two
``build_policy`` runs copying and joining every directive.  For a response
with no per-view override, exemption or nonce -- every API answer, most admin
pages -- the result is the same string every time, so it is built once and
kept, keyed by the settings objects themselves: a replaced setting (a test's
override) is picked up at the next response.  Anything else takes django-csp's
own path unchanged.
"""

from __future__ import annotations

from typing import Any

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CheckableLazyObject, CSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.core.handlers.exception import response_for_exception
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware

# What django-csp's decorators (csp_exempt, csp_update, csp_replace, csp) leave on a response.
_PER_RESPONSE = frozenset(
    {
        "_csp_exempt",
        "_csp_exempt_ro",
        "_csp_config",
        "_csp_config_ro",
        "_csp_update",
        "_csp_update_ro",
        "_csp_replace",
        "_csp_replace_ro",
    }
)
_DEBUG_EXEMPT = (404, 500)  # django-csp leaves Django's debug pages alone


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """``csp.middleware.CSPMiddleware`` with the settings' policies cached (see the module docstring)."""

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        self._policies_of: tuple[Any, Any] | None = None
        self._policies: tuple[str, str] = ("", "")

    def _cached_policies(self) -> tuple[Any, Any]:
        """The two policy settings, after rebuilding the cached headers if either object was replaced."""
        config = getattr(settings, "CONTENT_SECURITY_POLICY", None)
        config_ro = getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None)
        cached_for = self._policies_of
        if cached_for is None or cached_for[0] is not config or cached_for[1] is not config_ro:
            self._policies = (build_policy(), build_policy(report_only=True))
            self._policies_of = (config, config_ro)
        return config, config_ro

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        """The cached headers when nothing about this response changes them; django-csp's own path otherwise."""
        if getattr(request, "_csp_nonce", None) is not None or not _PER_RESPONSE.isdisjoint(vars(response)):
            return super().process_response(request, response)
        if response.status_code in _DEBUG_EXEMPT and settings.DEBUG:
            return response
        config, config_ro = self._cached_policies()
        for name, value, policy in zip((HEADER, HEADER_REPORT_ONLY), self._policies, (config, config_ro), strict=True):
            if not value or name in response:
                continue
            if not _excluded(request, policy):
                response[name] = value
        # As django-csp does: a nonce asked for after the header is written is an error, not a silent no-op.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)  # type: ignore[attr-defined]
        return response

    def policy_headers(self, request: HttpRequest, response: HttpResponseBase) -> None:
        """The enforced and report-only headers on ``response``, for a view that offers no nonce (the API)."""
        if not _PER_RESPONSE.isdisjoint(vars(response)):
            super().process_response(request, response)
            return
        if response.status_code in _DEBUG_EXEMPT and settings.DEBUG:
            return
        config, config_ro = self._cached_policies()
        header, header_ro = self._policies
        if header and HEADER not in response and not _excluded(request, config):
            response.headers[HEADER] = header
        if header_ro and HEADER_REPORT_ONLY not in response and not _excluded(request, config_ro):
            response.headers[HEADER_REPORT_ONLY] = header_ro


def _excluded(request: HttpRequest, policy: Any) -> bool:
    prefixes = (policy or {}).get("EXCLUDE_URL_PREFIXES", None) or ()
    return bool(prefixes) and request.path_info.startswith(tuple(prefixes))


class ApiHeadersMiddleware:
    """The full stack's header and host middleware, for API routes, in one layer (``API_MIDDLEWARE``).

    ``SecurityMiddleware`` (HTTPS redirect, HSTS, ``nosniff``, referrer and
    opener policies), ``CommonMiddleware`` (disallowed user agents, the
    ``ALLOWED_HOSTS`` check, ``Content-Length``), ``XFrameOptionsMiddleware``
    and the Content-Security-Policy, in the order and with the answers the
    four give in the full stack -- measured at ~40 µs of CPU per request as
    four layers (each wrapped by Django, each reading settings and setting
    headers one conversion at a time), ~10 µs as one.  Each decision is
    still the original class's: its instance is kept and asked whenever a
    setting makes the rare path possible (a redirect, ``PREPEND_WWW``,
    disallowed agents, ``APPEND_SLASH``).  ``tests/gateway/test_stacks.py``
    compares API answers header by header with the full stack's.  Views on
    this stack get no CSP nonce (they render no HTML).
    """

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self.security = SecurityMiddleware(get_response)
        self.common = CommonMiddleware(get_response)
        self.xframe = XFrameOptionsMiddleware(get_response)
        self.csp = ContentSecurityPolicyMiddleware(get_response)
        security = self.security
        # SecurityMiddleware's unconditional headers, as its process_response computes them each time.
        referrer = security.referrer_policy
        if isinstance(referrer, str):
            referrer = ",".join(v.strip() for v in referrer.split(","))
        elif referrer:
            referrer = ",".join(referrer)
        self._static: list[tuple[str, str]] = [
            (name, value)
            for name, value in (
                ("X-Content-Type-Options", "nosniff" if security.content_type_nosniff else ""),
                ("Referrer-Policy", referrer or ""),
                ("Cross-Origin-Opener-Policy", security.cross_origin_opener_policy or ""),
            )
            if value
        ]
        sts = ""
        if security.sts_seconds:
            sts = f"max-age={security.sts_seconds}"
            sts += "; includeSubDomains" if security.sts_include_subdomains else ""
            sts += "; preload" if security.sts_preload else ""
        self._sts = sts

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.security.process_request(request) if self.security.redirect else None
        if response is None:
            try:
                response = self._inner(request)
            except Exception as exc:  # as Django's wrapper around CommonMiddleware would answer it
                response = response_for_exception(request, exc)
        return self._security_headers(request, response)

    def _inner(self, request: HttpRequest) -> HttpResponseBase:
        if settings.PREPEND_WWW or (settings.DISALLOWED_USER_AGENTS and "HTTP_USER_AGENT" in request.META):
            redirect = self.common.process_request(request)
            if redirect is not None:
                return self.common.process_response(request, redirect)
        else:
            request.get_host()  # the ALLOWED_HOSTS check: DisallowedHost is a 400
        response = self.get_response(request)
        self.csp.policy_headers(request, response)
        if response.get("X-Frame-Options") is None and not getattr(response, "xframe_options_exempt", False):
            response.headers["X-Frame-Options"] = self.xframe.get_xframe_options_value(request, response)
        if response.status_code == 404 and self.common.should_redirect_with_slash(request):
            return self.common.response_redirect_class(self.common.get_full_path_with_slash(request))
        if not response.streaming and not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))
        return response

    def _security_headers(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        headers = response.headers
        if self._sts and "Strict-Transport-Security" not in headers and request.is_secure():
            headers["Strict-Transport-Security"] = self._sts
        for name, value in self._static:
            if name not in headers:
                headers[name] = value
        return response
