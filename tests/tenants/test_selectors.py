"""Usage summaries from the durable record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from audit.services import audit_event_record
from tenants.models import ApiKey
from tenants.selectors import api_key_status, usage_summary, usage_units_since
from tests.fixtures.factories import PlanFactory, TenantFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

DAY = datetime(2030, 3, 10, tzinfo=UTC)


def _event(tenant, when, **fields):
    fields.setdefault("http_status", 200)
    audit_event_record(
        event_type=fields.pop("event_type", "request"),
        tenant_id=tenant.pk,
        tenant_slug=tenant.slug,
        occurred_at=when,
        **fields,
    )


def test_summary_counts_per_day_model_key_and_code():
    tenant, other = TenantFactory(plan=PlanFactory()), TenantFactory(plan=PlanFactory())
    _event(
        tenant,
        DAY + timedelta(hours=1),
        units=64,
        model_name="digits",
        model_version=2,
        key_prefix="maas_a",
        latency_ms=4.0,
    )
    _event(
        tenant,
        DAY + timedelta(hours=2),
        units=1,
        model_name="digits",
        model_version=2,
        key_prefix="maas_b",
        latency_ms=2.0,
    )
    _event(tenant, DAY + timedelta(hours=3), http_status=429, error_code="quota_exceeded", key_prefix="maas_a")
    _event(tenant, DAY + timedelta(days=2), http_status=403, error_code="policy_denied", key_prefix="maas_a")
    _event(tenant, DAY + timedelta(days=2, hours=1), http_status=503, error_code="audit_unavailable")
    _event(tenant, DAY + timedelta(days=2, hours=2), event_type="job", units=-5)
    _event(tenant, DAY - timedelta(seconds=1), units=1000)  # before the period
    _event(other, DAY + timedelta(hours=1), units=77)  # another tenant

    summary = usage_summary(tenant=tenant, since=DAY, until=DAY + timedelta(days=3))
    assert (summary.requests, summary.instances, summary.refusals, summary.errors) == (5, 60, 2, 1)
    assert summary.refusals_by_code == {"policy_denied": 1, "quota_exceeded": 1}
    assert [d.day.isoformat() for d in summary.days] == ["2030-03-10", "2030-03-11", "2030-03-12"]
    first, empty, third = summary.days
    assert (first.requests, first.instances, first.refusals, first.avg_latency_ms) == (3, 65, 1, 3.0)
    assert (empty.requests, empty.instances) == (0, 0)
    assert (third.refusals, third.errors, third.instances) == (1, 1, -5)
    assert [(m.label, m.instances, m.max_latency_ms) for m in summary.models] == [("digits@2", 65, 4.0)]
    assert {k.label: k.requests for k in summary.keys} == {"maas_a": 3, "maas_b": 1}
    only_b = usage_summary(tenant=tenant, since=DAY, until=DAY + timedelta(days=3), key_prefix="maas_b")
    assert only_b.instances == 1


def test_units_since_for_a_tenant_and_for_keys():
    tenant = TenantFactory(plan=PlanFactory())
    _event(tenant, DAY, units=5, key_prefix="maas_a")
    _event(tenant, DAY + timedelta(minutes=1), units=7, key_prefix="maas_b")
    _event(tenant, DAY - timedelta(minutes=1), units=100, key_prefix="maas_a")
    assert usage_units_since(tenant_id=tenant.pk, since=DAY) == 12
    assert usage_units_since(tenant_id=tenant.pk, since=DAY, key_prefixes=["maas_a"]) == 5


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "active"),
        ({"expires_at": DAY + timedelta(days=1)}, "active"),
        ({"expires_at": DAY}, "expired"),
        ({"grace_until": DAY + timedelta(hours=1)}, "rotating"),
        ({"grace_until": DAY}, "expired"),
        ({"revoked": True, "grace_until": DAY + timedelta(hours=1)}, "revoked"),
        ({"revoked": True, "expires_at": DAY}, "revoked"),
    ],
)
def test_api_key_status(fields, expected):
    # An unsaved key is enough: the status is computed from its fields and the clock only.
    assert api_key_status(key=ApiKey(**fields), now=DAY) == expected
