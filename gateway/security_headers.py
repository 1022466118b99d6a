"""The Content-Security-Policy header, built once per policy rather than twice per response.

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
from django.http import HttpRequest
from django.http.response import HttpResponseBase

# What django-csp's decorators (csp_exempt, csp_update, csp_replace, csp) leave on a response.
_PER_RESPONSE = (
    "_csp_exempt",
    "_csp_exempt_ro",
    "_csp_config",
    "_csp_config_ro",
    "_csp_update",
    "_csp_update_ro",
    "_csp_replace",
    "_csp_replace_ro",
)
_DEBUG_EXEMPT = (404, 500)  # django-csp leaves Django's debug pages alone


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """``csp.middleware.CSPMiddleware`` with the settings' policies cached (see the module docstring)."""

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        self._policies_of: tuple[Any, Any] | None = None
        self._policies: tuple[str, str] = ("", "")

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        """The cached headers when nothing about this response changes them; django-csp's own path otherwise."""
        if getattr(request, "_csp_nonce", None) is not None or any(hasattr(response, a) for a in _PER_RESPONSE):
            return super().process_response(request, response)
        if response.status_code in _DEBUG_EXEMPT and settings.DEBUG:
            return response
        config = getattr(settings, "CONTENT_SECURITY_POLICY", None)
        config_ro = getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None)
        cached_for = self._policies_of
        if cached_for is None or cached_for[0] is not config or cached_for[1] is not config_ro:
            self._policies = (build_policy(), build_policy(report_only=True))
            self._policies_of = (config, config_ro)
        for name, value, policy in zip((HEADER, HEADER_REPORT_ONLY), self._policies, (config, config_ro), strict=True):
            if not value or name in response:
                continue
            prefixes = (policy or {}).get("EXCLUDE_URL_PREFIXES", None) or ()
            if not request.path_info.startswith(tuple(prefixes)):
                response[name] = value
        # As django-csp does: a nonce asked for after the header is written is an error, not a silent no-op.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)  # type: ignore[attr-defined]
        return response
