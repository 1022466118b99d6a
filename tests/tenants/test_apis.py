"""``/v1/usage`` and ``/v1/keys``: authentication codes, scopes, suspension, tenant isolation, audit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from audit.models import AuditEvent
from audit.services import audit_event_record
from tenants.services import (
    api_key_authenticate,
    api_key_revoke,
    api_key_rotate,
    quota_reserve,
    tenant_suspend,
)
from tests.fixtures.factories import PlanFactory, TenantFactory
from tests.fixtures.tenants import caches_expire, issue_key
from tests.support import assert_problem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _bearer(raw_key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}


@pytest.fixture
def quota_tenant(db):
    return TenantFactory(plan=PlanFactory(daily_instances=100, monthly_instances=1000, rate_per_second=50, burst=5))


@pytest.fixture
def usage_key(quota_tenant):
    return issue_key(quota_tenant, scopes=["predict", "usage:read"])


def test_usage_answers_limits_quotas_and_history(client, quota_tenant, usage_key, settings):
    settings.REDIS_URL = ""
    principal = api_key_authenticate(raw_key=usage_key.raw_key)
    quota_reserve(principal=principal, units=7)
    audit_event_record(
        event_type="request",
        tenant_id=quota_tenant.pk,
        tenant_slug=quota_tenant.slug,
        key_prefix=usage_key.key.prefix,
        model_name="digits",
        model_version=1,
        http_status=200,
        latency_ms=3.0,
        units=7,
    )
    audit_event_record(
        event_type="request", tenant_id=quota_tenant.pk, http_status=429, error_code="quota_exceeded", units=0
    )
    response = client.get("/v1/usage", **_bearer(usage_key.raw_key))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["tenant"] == quota_tenant.slug and body["key_prefix"] == usage_key.key.prefix
    assert body["limits"]["daily_instances"] == 100 and body["limits"]["max_batch"] == 1024
    daily = next(q for q in body["quotas"] if q["period"] == "daily")
    assert daily == {**daily, "limit": 100, "used": 7, "remaining": 93, "scope": "tenant"}
    assert body["rate"] == [{"scope": "tenant", "per_second": 50.0, "burst": 5}]
    assert len(body["days"]) == 30
    today = body["days"][-1]
    assert today["day"] == datetime.now(UTC).date().isoformat()
    assert today["instances"] == 7 and today["refusals"] == 1
    assert body["totals"]["refusals_by_code"] == {"quota_exceeded": 1}
    assert body["models"][0]["label"] == "digits@1"
    # The read itself is audited, by prefix.
    event = AuditEvent.objects.get(action="usage.read")
    assert event.key_prefix == usage_key.key.prefix and event.http_status == 200
    assert event.request_id == response["X-Request-ID"] and event.path == "/v1/usage"


def test_usage_never_shows_another_tenant(client, usage_key, quota_tenant):
    other = TenantFactory(plan=PlanFactory())
    audit_event_record(event_type="request", tenant_id=other.pk, tenant_slug=other.slug, http_status=200, units=999)
    body = client.get("/v1/usage?days=7", HTTP_X_API_KEY=usage_key.raw_key).json()
    assert body["tenant"] == quota_tenant.slug
    assert body["totals"]["instances"] == 0
    assert len(body["days"]) == 7


def test_usage_days_are_validated(client, usage_key):
    assert_problem(client.get("/v1/usage?days=0", **_bearer(usage_key.raw_key)), 400, "validation_error")


def test_missing_key_is_401_with_challenge(client):
    response = client.get("/v1/usage")
    assert_problem(response, 401, "missing_api_key")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer not-a-key", "Basic dXNlcjpwYXNz", "Bearer "])
def test_malformed_key_is_401_invalid(client, header):
    response = client.get("/v1/usage", HTTP_AUTHORIZATION=header)
    assert_problem(response, 401, "invalid_api_key")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_unknown_secret_is_401_invalid(client, usage_key):
    response = client.get("/v1/usage", **_bearer(usage_key.key.prefix + "." + "x" * 43))
    assert_problem(response, 401, "invalid_api_key")


def test_revoked_key_is_401_revoked(client, usage_key):
    api_key_revoke(key=usage_key.key, reason="test", actor="test")
    caches_expire()
    response = client.get("/v1/usage", **_bearer(usage_key.raw_key))
    assert_problem(response, 401, "api_key_revoked")
    assert "WWW-Authenticate" in response


def test_expired_key_is_401_expired(client, usage_key):
    new = api_key_rotate(key=usage_key.key, actor="test", grace_hours=0)
    caches_expire()
    assert_problem(client.get("/v1/usage", **_bearer(usage_key.raw_key)), 401, "api_key_expired")
    assert client.get("/v1/usage", **_bearer(new.raw_key)).status_code == 200


def test_suspended_tenant_is_403(client, usage_key, quota_tenant):
    tenant_suspend(tenant=quota_tenant, reason="unpaid", actor="test")
    caches_expire()
    assert_problem(client.get("/v1/usage", **_bearer(usage_key.raw_key)), 403, "tenant_suspended")


def test_key_without_usage_scope_is_403_and_audited(client, quota_tenant):
    issued = issue_key(quota_tenant, scopes=["predict"])
    body = assert_problem(client.get("/v1/usage", **_bearer(issued.raw_key)), 403, "insufficient_scope")
    assert body["required_scope"] == "usage:read"
    event = AuditEvent.objects.get(action="usage.read")
    assert event.http_status == 403 and event.error_code == "insufficient_scope"


def test_keys_list_shows_own_keys_without_secrets(client, quota_tenant):
    reader = issue_key(quota_tenant, scopes=["keys:read"])
    issue_key(TenantFactory(plan=PlanFactory()))
    response = client.get("/v1/keys", **_bearer(reader.raw_key))
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert [k["prefix"] for k in keys] == [reader.key.prefix]
    assert keys[0]["status"] == "active"
    text = response.content.decode()
    assert reader.raw_key.split(".")[1] not in text and reader.key.key_hash not in text


def test_another_tenants_key_is_404_never_403(client, quota_tenant):
    reader = issue_key(quota_tenant, scopes=["keys:read"])
    foreign = issue_key(TenantFactory(plan=PlanFactory()))
    assert client.get(f"/v1/keys/{reader.key.prefix}", **_bearer(reader.raw_key)).status_code == 200
    for prefix in (foreign.key.prefix, "maas_doesnotexist"):
        body = assert_problem(client.get(f"/v1/keys/{prefix}", **_bearer(reader.raw_key)), 404, "not_found")
        assert foreign.key.prefix not in body["detail"]
