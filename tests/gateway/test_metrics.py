"""``/metrics``: restricted, Prometheus text format, counting requests and refusals."""

from __future__ import annotations

import json

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import assert_problem, gateway_server

pytestmark = [pytest.mark.django_db]


def _families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_metrics_require_staff_or_token(client, settings, admin_user):
    assert_problem(client.get("/metrics"), 401, "metrics_forbidden")
    settings.METRICS_TOKEN = "s3cret-token-value"
    assert_problem(client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong"), 403, "metrics_forbidden")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token-value").status_code == 200
    client.force_login(admin_user)
    assert client.get("/metrics").status_code == 200


def test_metrics_count_requests_refusals_and_inference(client, admin_user, digits, make_caller, digit_rows):
    caller = make_caller(daily_instances=1)
    body = json.dumps({"instances": digit_rows[:1].tolist(), "purpose": "research"})
    for _ in range(2):
        client.post("/v1/models/digits/predict", data=body, content_type="application/json", **caller.headers)
    client.force_login(admin_user)
    families = _families(client.get("/metrics").content.decode())
    requests_total = {
        (s.labels["endpoint"], s.labels["status"], s.labels["tenant"]): s.value
        for s in families["maas_http_requests"].samples
        if s.name.endswith("_total")
    }
    route = "v1/models/<str:name>/predict"
    assert requests_total[(route, "200", caller.tenant.slug)] >= 1
    assert requests_total[(route, "429", caller.tenant.slug)] >= 1
    refusals = {s.labels["reason"]: s.value for s in families["maas_refusals"].samples if s.name.endswith("_total")}
    assert refusals["quota_exceeded"] >= 1
    inference = [s for s in families["maas_inference_duration_seconds"].samples if s.name.endswith("_count")]
    assert any(s.labels["model"] == "digits" and s.value >= 1 for s in inference)
    assert "maas_audit_events_unsealed" in families and "maas_jobs" in families


@pytest.mark.django_db(transaction=True)
@pytest.mark.e2e
def test_metrics_aggregate_across_gunicorn_workers(tmp_path, settings, model_store, digits, make_caller, digit_rows):
    prom = tmp_path / "prom"
    prom.mkdir()
    caller = make_caller()
    with gateway_server(
        workers=2, MODEL_STORE_DIR=str(model_store), PROMETHEUS_MULTIPROC_DIR=str(prom), METRICS_TOKEN="tok-123456789"
    ) as base:
        for _ in range(12):
            response = requests.post(
                f"{base}/v1/models/digits/predict",
                headers=caller.http_headers,
                json={"instances": digit_rows[:1].tolist(), "purpose": "research"},
                timeout=30,
            )
            assert response.status_code == 200
        text = requests.get(f"{base}/metrics", headers={"Authorization": "Bearer tok-123456789"}, timeout=10).text
    families = _families(text)
    total = sum(
        s.value
        for s in families["maas_http_requests"].samples
        if s.name.endswith("_total") and s.labels["endpoint"] == "v1/models/<str:name>/predict"
    )
    assert total == 12
    assert len(list(prom.glob("*.db"))) >= 2  # several workers wrote their own samples
