"""Every non-success answer is application/problem+json with a stable code."""

from __future__ import annotations

import pytest

from tests.support import assert_problem

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.gateway.urls_errors"), pytest.mark.embedded]


def test_unknown_path_is_404_problem(client):
    body = assert_problem(client.get("/no/such/thing"), 404, "not_found")
    assert "/no/such/thing" in body["detail"]


def test_wrong_method_is_405_problem_with_allow(client):
    response = client.get("/t/echo")
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response["Allow"]


def test_malformed_json_is_400_problem(client):
    response = client.post("/t/echo", data="{not json", content_type="application/json")
    assert_problem(response, 400, "malformed_request")


def test_invalid_field_is_400_problem_naming_field(client):
    response = client.post("/t/echo", data={"count": 0}, content_type="application/json")
    body = assert_problem(response, 400, "validation_error")
    assert "count" in body["detail"]


def test_unexpected_exception_is_500_problem_without_traceback(client, caplog):
    client.raise_request_exception = False
    response = client.get("/t/boom")
    body = assert_problem(response, 500, "internal_error")
    assert "secret internal detail" not in response.content.decode()
    assert body["request_id"] == response["X-Request-ID"]
    assert any("unhandled exception" in r.getMessage() for r in caplog.records)


def test_plain_django_view_exception_is_500_problem(client):
    client.raise_request_exception = False
    response = client.get("/t/plain-boom")
    assert_problem(response, 500, "internal_error")
    assert "plain view failure" not in response.content.decode()


def test_domain_error_keeps_headers_and_extras(client):
    response = client.get("/t/quota")
    body = assert_problem(response, 429, "quota_exceeded")
    assert response["Retry-After"] == "60"
    assert body["limit"] == "daily"
