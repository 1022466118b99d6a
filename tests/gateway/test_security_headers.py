"""The cached Content-Security-Policy middleware answers exactly what django-csp's own would."""

from __future__ import annotations

import pytest
from csp.constants import HEADER, HEADER_REPORT_ONLY, NONE, SELF
from csp.decorators import csp_exempt, csp_update
from csp.exceptions import CSPNonceError
from csp.middleware import CSPMiddleware
from django.http import HttpResponse
from django.test import RequestFactory

from gateway.security_headers import ContentSecurityPolicyMiddleware

REPORT_ONLY = {"DIRECTIVES": {"default-src": [NONE], "report-uri": "/csp-report"}}


def _both(view, path: str = "/v1/models", *, touch_nonce: bool = False, response_header: str | None = None):
    """The same request through django-csp's middleware and the cached one."""
    answers = []
    for middleware in (CSPMiddleware, ContentSecurityPolicyMiddleware):

        def get_response(request, view=view):
            if touch_nonce:
                str(request.csp_nonce)
            response = view(request)
            if response_header is not None:
                response[HEADER] = response_header
            return response

        request = RequestFactory().get(path)
        answers.append((middleware(get_response)(request), request))
    return answers


def _plain(request):
    return HttpResponse("ok")


@csp_exempt()
def _exempt(request):
    return HttpResponse("ok")


@csp_update({"img-src": ["https://images.example"]})
def _updated(request):
    return HttpResponse("ok")


@pytest.mark.parametrize(
    ("view", "kwargs"),
    [
        (_plain, {}),
        (_exempt, {}),
        (_updated, {}),
        (_plain, {"touch_nonce": True}),
        (_plain, {"response_header": "default-src 'none'"}),
    ],
)
def test_the_same_headers_as_django_csp(view, kwargs):
    (theirs, _), (ours, _) = _both(view, **kwargs)
    assert theirs.get(HEADER) == ours.get(HEADER)
    assert theirs.get(HEADER_REPORT_ONLY) == ours.get(HEADER_REPORT_ONLY)


def test_report_only_and_excluded_prefixes_as_django_csp(settings):
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = REPORT_ONLY
    settings.CONTENT_SECURITY_POLICY = {**settings.CONTENT_SECURITY_POLICY, "EXCLUDE_URL_PREFIXES": ["/v2"]}
    for path in ("/v1/models", "/v2/health/live"):
        (theirs, _), (ours, _) = _both(_plain, path)
        assert theirs.get(HEADER) == ours.get(HEADER)
        assert theirs.get(HEADER_REPORT_ONLY) == ours.get(HEADER_REPORT_ONLY) is not None
    assert HEADER not in ours  # /v2 excluded


def test_a_changed_setting_is_picked_up_by_a_loaded_middleware(settings):
    middleware = ContentSecurityPolicyMiddleware(_plain)
    before = middleware(RequestFactory().get("/v1/models"))[HEADER]
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": [SELF], "frame-ancestors": [NONE]}}
    after = middleware(RequestFactory().get("/v1/models"))[HEADER]
    assert before != after and "object-src" not in after and "frame-ancestors 'none'" in after


def test_a_nonce_asked_for_after_the_header_is_written_is_an_error():
    middleware = ContentSecurityPolicyMiddleware(_plain)
    request = RequestFactory().get("/v1/models")
    middleware(request)
    with pytest.raises(CSPNonceError):
        str(request.csp_nonce)


def test_debug_pages_are_left_alone_as_django_csp_does(settings):
    settings.DEBUG = True
    (theirs, _), (ours, _) = _both(lambda request: HttpResponse(status=404))
    assert HEADER not in theirs and HEADER not in ours
