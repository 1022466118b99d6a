"""Request ids, structured access logs and health endpoints."""

from __future__ import annotations

import json
import logging

import pytest

from core.logging import JsonFormatter
from tests.support import assert_problem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_request_id_generated_and_echoed(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert len(response["X-Request-ID"]) == 32


def test_well_formed_client_request_id_is_kept(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="client-abc-12345")
    assert response["X-Request-ID"] == "client-abc-12345"


@pytest.mark.parametrize("bad", ["short", "x" * 200, "has space in it", "new\nline-injection"])
def test_malformed_client_request_id_is_replaced(client, bad):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=bad)
    assert response["X-Request-ID"] != bad
    assert len(response["X-Request-ID"]) == 32


def test_access_log_is_one_json_line_with_request_fields(client, caplog):
    caplog.set_level(logging.INFO, logger="gateway.access")
    response = client.get("/healthz", HTTP_X_REQUEST_ID="trace-0000-1111")
    records = [r for r in caplog.records if r.name == "gateway.access"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["method"] == "GET"
    assert line["path"] == "/healthz"
    assert line["status"] == response.status_code == 200
    assert line["request_id"] == "trace-0000-1111"
    assert isinstance(line["latency_ms"], float)
    assert "tenant" in line


def test_readyz_reports_each_dependency(client, settings):
    settings.METRICS_TOKEN = "ops-token-for-tests"
    response = client.get("/readyz", HTTP_AUTHORIZATION="Bearer ops-token-for-tests")
    body = response.json()
    assert {"database", "cache", "broker"} <= set(body["checks"])
    assert body["checks"]["database"]["status"] == "ok"


def test_readyz_names_failed_dependency(client, monkeypatch, settings):
    from core import health

    settings.METRICS_TOKEN = "ops-token-for-tests"

    def broken():
        raise ConnectionError("broker down")

    monkeypatch.setitem(health._checks, "broker", broken)
    response = client.get("/readyz", HTTP_AUTHORIZATION="Bearer ops-token-for-tests")
    body = assert_problem(response, 503, "dependency_unavailable")
    assert body["checks"]["broker"]["status"] == "fail"
    assert "broker" in body["detail"]
