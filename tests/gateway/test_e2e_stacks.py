"""Issue 15, item 1, end to end: real gunicorn serves API routes on the lean stack, the rest on the full one.

A stale session cookie tells the two stacks apart from outside: the full
stack's session middleware answers it by deleting the cookie (and
``Vary: Cookie``); the lean stack never looks at it.
"""

from __future__ import annotations

import pytest
import requests

from tests.support import assert_problem, gateway_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded, pytest.mark.e2e]

STALE = {"Cookie": "sessionid=x"}


@pytest.fixture
def server(env, digits):
    with gateway_server(workers=1, **env) as base:
        yield base


def test_api_routes_are_lean_and_the_admin_is_not_on_a_real_server(server, make_caller, digit_rows):
    caller = make_caller()
    predict = requests.post(
        f"{server}/v1/models/digits/predict",
        headers={**caller.http_headers, **STALE, "X-Request-ID": "e2e-lean-00000001"},
        json={"instances": digit_rows[:2].tolist(), "purpose": "research"},
        timeout=30,
    )
    assert predict.status_code == 200, predict.text
    assert predict.headers["X-Request-ID"] == "e2e-lean-00000001"
    for name, value in {
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
    }.items():
        assert predict.headers[name] == value
    answers = [
        predict,
        requests.get(f"{server}/healthz", headers=STALE, timeout=10),
        requests.get(f"{server}/v2/health/live", headers=STALE, timeout=10),
        requests.get(f"{server}/v1/models", headers=STALE, timeout=10),
    ]
    for response in answers:
        assert "Set-Cookie" not in response.headers and "Vary" not in response.headers, response.headers
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        assert int(response.headers["Content-Length"]) == len(response.content)
    assert_problem(answers[-1], 401, "missing_api_key")

    # The full stack still serves what honours a staff session, and the admin still checks CSRF.
    # (Admin pages themselves need collected static files, which this server has not: tests/browser.)
    metrics = requests.get(f"{server}/metrics", headers=STALE, timeout=10)
    assert_problem(metrics, 401, "metrics_forbidden")
    assert 'sessionid=""' in metrics.headers["Set-Cookie"] and "Cookie" in metrics.headers["Vary"]
    login = requests.post(f"{server}/admin/login/", data={"username": "a", "password": "b"}, timeout=10)
    assert login.status_code == 403  # no CSRF token


def test_unknown_paths_still_get_a_problem_404_on_a_real_server(server):
    for path in ("/v1/no/such/thing", "/v2/nothing", "/nothing"):
        response = requests.get(f"{server}{path}", timeout=10)
        body = assert_problem(response, 404, "not_found")
        assert body["request_id"] == response.headers["X-Request-ID"]
