"""Issue 15, item 1: API routes take the lean middleware stack, everything else the full one.

The lean stack must be invisible to clients: an API answer carries the same
headers, request id, access-log line and problem documents as it did through
the full stack -- minus what only a browser session needed (cookies,
``Vary: Cookie``).  The admin keeps its sessions, CSRF, login and second
factor.  Which routes are lean is decided by ``gateway.urls_api``: every view
there must be CSRF-exempt and present at the same route in the root URLconf.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from django.test import AsyncClient, Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern
from rest_framework.authentication import SessionAuthentication

from core.logging import JsonFormatter
from gateway import bench_views
from gateway.stacks import api_match, api_resolvers
from tests.support import assert_problem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

# Headers whose value is this request's own (the id) or absent from one side by design.
_PER_REQUEST = {"X-Request-ID"}


def _routes(patterns, prefix: str = "") -> dict[str, object]:
    """Every route of a URLconf (``route string -> view``), includes flattened."""
    found: dict[str, object] = {}
    for entry in patterns:
        if isinstance(entry, URLResolver):
            found.update(_routes(entry.url_patterns, prefix + str(entry.pattern)))
        elif isinstance(entry, URLPattern):
            found.setdefault(prefix + str(entry.pattern), entry.callback)
    return found


def _lean(response) -> bool:
    """Whether the request went through the lean stack: the split handed it on, and no session was opened."""
    request = response.wsgi_request
    return hasattr(request, "_api_resolver_match") and not hasattr(request, "session")


def test_every_lean_route_is_csrf_exempt_and_answers_the_same_view_in_the_root_urlconf():
    lean = _routes(get_resolver("gateway.urls_api").url_patterns)
    root = _routes(get_resolver("gateway.urls").url_patterns)
    assert {"healthz", "v1/models/<str:name>/predict", "v2/models/<str:name>/infer", "v1/audit/public-key"} <= set(lean)
    for route, view in [*lean.items(), *_routes(bench_views.urlpatterns).items()]:
        # The lean stack has no CsrfViewMiddleware: a view that relied on it would lose its protection.
        assert getattr(view, "csrf_exempt", False), f"{route} is on the lean stack but not CSRF-exempt"
        # Nor may it authenticate by session: the lean stack has no session or user to offer.
        authenticators = getattr(getattr(view, "cls", None), "authentication_classes", [])
        assert not any(issubclass(a, SessionAuthentication) for a in authenticators), route
    for route, view in lean.items():
        assert root.get(route) is view, f"{route} answers differently on the two stacks"
    # Metrics are labelled by the matched route: the same string whichever URLconf matched it.
    for path in ("/v1/models/digits/predict", "/v2/models/digits/versions/1/infer", "/healthz"):
        lean_match = get_resolver("gateway.urls_api").resolve(path)
        root_match = get_resolver("gateway.urls").resolve(path)
        assert (lean_match.route, lean_match.func) == (root_match.route, root_match.func)


@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        "/v1/models",
        "/v1/models/digits",
        "/v1/models/digits/predict",
        "/v1/audit/checkpoints/3",
        "/v1/audit/receipts/abc",
        "/v2",
        "/v2/models/digits/versions/2/infer",
        "/bench/bare/digits/predict",
        "/bench/auth-quota/digits/predict",
    ],
)
def test_the_first_segment_index_finds_the_route_a_full_resolution_finds(path):
    # The bench routes too (mounted when BENCH_ENDPOINTS is set): the index must not skip a later group.
    api = get_resolver("gateway.urls_api")
    patterns = [*api.url_patterns, *bench_views.urlpatterns]
    expected = URLResolver(RegexPattern(r"^/"), patterns).resolve(path)
    index, _ = api_resolvers(URLResolver(RegexPattern(r"^/"), patterns))
    found = index[path[1:].split("/", 1)[0]].resolve(path)
    assert (found.func, found.route, found.kwargs) == (expected.func, expected.route, expected.kwargs)
    assert api_match(RequestFactory().get(path)) is not None or path.startswith("/bench")


@pytest.mark.parametrize("path", ["/", "/admin/", "/v1/docs/", "/v1/audit/export", "/metrics", "/static/x.css", "/v3"])
def test_paths_outside_the_api_routes_match_nothing_lean(path):
    assert api_match(RequestFactory().get(path)) is None


@pytest.mark.parametrize("route", ["metrics", "readyz", "v1/audit/export", "v1/schema/", "v1/docs/", "admin/"])
def test_routes_that_honour_a_staff_session_or_serve_people_are_not_lean(route):
    assert route not in _routes(get_resolver("gateway.urls_api").url_patterns)


def test_an_api_answer_sets_no_cookie_and_does_not_vary_on_one(api_client, make_caller, digits):
    caller = make_caller()
    response = api_client.post(
        "/v1/models/digits/predict",
        {"instances": [[0.0] * 64], "purpose": "research"},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {caller.key}",
        # A stale session cookie: the full stack's SessionMiddleware would answer by deleting it.
        HTTP_COOKIE="sessionid=x; csrftoken=abc",
    )
    assert response.status_code == 200, response.content
    assert _lean(response)
    assert not response.cookies
    assert "Cookie" not in response.get("Vary", "")
    assert not hasattr(response.wsgi_request, "_messages")


def test_an_api_post_needs_no_csrf_token_even_with_a_session_cookie(make_caller, digits):
    caller = make_caller()
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/v1/models/digits/predict",
        json.dumps({"instances": [[0.0] * 64], "purpose": "research"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {caller.key}",
        HTTP_COOKIE="sessionid=whatever",
    )
    assert response.status_code == 200, response.content


def test_the_admin_keeps_sessions_csrf_and_its_headers(client):
    page = client.get("/admin/login/")
    assert page.status_code == 200
    assert not _lean(page)
    assert "csrftoken" in page.cookies and "Cookie" in page["Vary"]
    refused = Client(enforce_csrf_checks=True).post("/admin/login/", {"username": "a", "password": "b"})
    assert refused.status_code == 403  # no CSRF token: the admin still checks it


def test_an_admin_login_still_opens_a_session(client, django_user_model):
    django_user_model.objects.create_user("ops", password="a-long-password-1", is_staff=True)
    response = client.post("/admin/login/", {"username": "ops", "password": "a-long-password-1", "next": "/admin/"})
    assert response.status_code == 302 and "sessionid" in response.cookies
    assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize("path", ["/metrics", "/readyz", "/v1/audit/export"])
def test_staff_session_routes_keep_the_full_stack(client, path):
    assert not _lean(client.get(path))


@pytest.mark.parametrize("path", ["/v1/no/such/thing", "/v2/no/such/thing", "/bench/bare/digits/predict", "/nothing"])
def test_unknown_paths_get_the_same_404_problem_on_the_full_stack(client, path):
    response = client.get(path)
    body = assert_problem(response, 404, "not_found")
    assert path in body["detail"] and body["request_id"] == response["X-Request-ID"]
    assert not _lean(response)


def _answers(client: Client, method: str, path: str, headers: dict[str, str]):
    return getattr(client, method)(path, **headers)


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("get", "/healthz", {}, 200),
        ("post", "/healthz", {}, 405),
        ("get", "/v1/models", {}, 401),
        ("get", "/v1/models", {"HTTP_AUTHORIZATION": "Bearer maas_notakey0.secretsecretsecret"}, 401),
        ("post", "/v1/models", {}, 401),
        ("get", "/v1/models?api_key=maas_abcdefgh.0123456789abcdefXYZ", {}, 400),
        ("get", "/v2/health/live", {}, 200),
        ("get", "/v2/models/digits/infer", {}, 405),
        ("get", "/v1/audit/public-key", {}, None),
        ("get", "/v1/models", {"HTTP_HOST": "evil.example"}, 400),
        ("get", "/v1/models", {"HTTP_ACCEPT": "text/html"}, 401),
    ],
)
def test_an_api_answer_is_the_one_the_full_stack_gave(settings, method, path, headers, status):
    lean = _answers(Client(), method, path, headers)
    settings.ROOT_URLCONF = "tests.gateway.urls_full_stack"
    full = _answers(Client(), method, path, headers)
    assert lean.status_code == full.status_code and (status is None or lean.status_code == status)
    assert _lean(lean) and not _lean(full)
    lean_headers = {k: v for k, v in lean.headers.items() if k not in _PER_REQUEST}
    full_headers = {k: v for k, v in full.headers.items() if k not in _PER_REQUEST}
    assert lean_headers == full_headers
    assert "Set-Cookie" not in lean_headers
    if lean["Content-Type"].startswith("application/problem+json"):
        lean_body, full_body = lean.json(), full.json()
        assert lean_body.pop("request_id") == lean["X-Request-ID"]
        full_body.pop("request_id")
        assert lean_body == full_body


def test_only_the_full_stack_answers_a_stale_session_cookie(settings):
    lean = Client().get("/v1/models", HTTP_COOKIE="sessionid=x")
    settings.ROOT_URLCONF = "tests.gateway.urls_full_stack"
    full = Client().get("/v1/models", HTTP_COOKIE="sessionid=x")
    assert lean.status_code == full.status_code == 401
    assert full.cookies["sessionid"].value == "" and full["Vary"] == "Cookie"  # what API answers used to carry
    assert not lean.cookies and "Vary" not in lean


def test_transport_security_applies_to_api_answers(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31_536_000
    plain = Client().get("/v1/models", HTTP_X_FORWARDED_PROTO="http")
    assert plain.status_code == 301 and plain["Location"] == "https://testserver/v1/models"
    assert _lean(plain) and plain["X-Request-ID"]
    secure = Client().get("/v1/models", HTTP_X_FORWARDED_PROTO="https")
    assert secure.status_code == 401 and _lean(secure)
    assert secure["Strict-Transport-Security"] == "max-age=31536000"
    probe = Client().get("/v2/health/live")  # SECURE_REDIRECT_EXEMPT: probes stay on plain HTTP
    assert probe.status_code == 200 and _lean(probe)


def test_api_answers_carry_the_browser_headers(client):
    response = client.get("/v2/health/live")
    assert _lean(response)
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["Content-Security-Policy"] == client.get("/admin/login/")["Content-Security-Policy"]
    assert int(response["Content-Length"]) == len(response.content)


def test_the_access_log_line_of_a_lean_request(client, caplog):
    caplog.set_level(logging.INFO, logger="gateway.access")
    response = client.get("/v1/models", HTTP_X_REQUEST_ID="lean-0000-1111")
    assert _lean(response)
    (record,) = [r for r in caplog.records if r.name == "gateway.access"]
    line = json.loads(JsonFormatter().format(record))
    assert line["logger"] == "gateway.access" and line["msg"] == "request" and line["level"] == "INFO"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/v1/models", 401)
    assert line["request_id"] == "lean-0000-1111" and line["tenant"] == ""
    assert isinstance(line["latency_ms"], float)


@pytest.mark.urls("tests.gateway.urls_lean_failures")
@pytest.mark.parametrize(
    ("path", "status", "code"),
    [("/v1/t/boom", 500, "internal_error"), ("/v1/t/missing", 404, "not_found"), ("/v1/t/denied", 403, "forbidden")],
)
def test_a_lean_view_failure_is_a_problem_document_with_the_request_id(client, caplog, path, status, code):
    client.raise_request_exception = False
    response = client.get(path)
    assert _lean(response)
    body = assert_problem(response, status, code)
    assert body["request_id"] == response["X-Request-ID"]
    assert "secret internal detail" not in response.content.decode()
    assert response["X-Frame-Options"] == "DENY" and "Content-Security-Policy" in response


def test_the_asgi_handler_splits_the_same_way():
    async def both():
        client = AsyncClient()
        return await client.get("/v2/health/live"), await client.get("/admin/login/")

    api, admin = asyncio.run(both())
    assert api.status_code == 200 and api["X-Request-ID"] and api["X-Frame-Options"] == "DENY"
    assert not api.cookies and "Cookie" not in api.get("Vary", "")
    assert admin.status_code == 200 and "csrftoken" in admin.cookies


def test_the_asgi_entry_point_splits_the_same_way():
    from asgiref.testing import ApplicationCommunicator

    from gateway.asgi import application

    async def get(path: str) -> tuple[int, dict[str, str]]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver"), (b"cookie", b"sessionid=x")],
            "client": ("127.0.0.1", 40000),
            "server": ("testserver", 80),
        }
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
        start = await communicator.receive_output(10)
        await communicator.receive_output(10)
        return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}

    status, headers = asyncio.run(get("/v2/health/live"))
    assert status == 200 and headers["x-frame-options"] == "DENY" and headers["x-request-id"]
    assert "set-cookie" not in headers and "vary" not in headers  # the lean stack never read the cookie
    status, headers = asyncio.run(get("/metrics"))
    assert status == 401 and 'sessionid=""' in headers["set-cookie"]  # the full stack's session middleware ran
