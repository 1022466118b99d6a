"""Tenants and plans: invariants, audit records with before/after, cache invalidation."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from audit.models import AuditEvent
from core.errors import Conflict, ValidationFailed
from tenants.models import Plan, Tenant
from tenants.services import (
    api_key_authenticate,
    plan_delete,
    plan_save,
    tenant_create,
    tenant_quota_set,
    tenant_save,
    tenant_suspend,
)
from tests.fixtures.factories import PlanFactory
from tests.fixtures.tenants import caches_expire, issue_key

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_slug_is_immutable_whoever_writes(tenant):
    tenant.slug = "renamed"
    with pytest.raises(ValidationFailed):
        tenant_save(tenant=tenant, actor="staff:x")
    with pytest.raises(ValidationError):
        Tenant.save(tenant)


def test_tenant_change_is_audited_with_before_and_after(tenant):
    tenant.region = "us"
    tenant.contact = "ops@example.com"
    tenant_save(tenant=tenant, actor="staff:alice")
    event = AuditEvent.objects.get(action="tenant.update")
    assert event.actor == "staff:alice" and event.tenant_id == tenant.pk
    assert event.detail["before"]["region"] == "eu" and event.detail["after"]["region"] == "us"
    tenant_save(tenant=tenant, actor="staff:alice")  # no change: no record
    assert AuditEvent.objects.filter(action="tenant.update").count() == 1


def test_verification_is_stamped_and_cleared(db):
    tenant = tenant_create(slug="acme", actor="staff:carol", plan=PlanFactory())
    assert not tenant.identity_verified and tenant.verified_at is None
    tenant.identity_verified = True
    tenant_save(tenant=tenant, actor="staff:carol")
    tenant.refresh_from_db()
    assert tenant.verified_by == "staff:carol" and tenant.verified_at is not None
    tenant.identity_verified = False
    tenant_save(tenant=tenant, actor="staff:carol")
    tenant.refresh_from_db()
    assert tenant.verified_by == "" and tenant.verified_at is None


def test_suspension_needs_a_reason(tenant):
    with pytest.raises(ValidationFailed):
        tenant_suspend(tenant=tenant, reason="", actor="x")
    tenant.status = Tenant.Status.SUSPENDED
    with pytest.raises(ValidationFailed):
        tenant_save(tenant=tenant, actor="x")


@pytest.mark.parametrize(
    ("field", "value"),
    [("region", "Europe!"), ("approved_purposes", ["ok", "not ok"]), ("approved_purposes", "research")],
)
def test_invalid_tenant_values(tenant, field, value):
    setattr(tenant, field, value)
    with pytest.raises(ValidationFailed):
        tenant_save(tenant=tenant, actor="x")


def test_quota_overrides_validate_and_apply(tenant):
    issued = issue_key(tenant)
    with pytest.raises(ValidationFailed):
        tenant_quota_set(tenant=tenant, actor="x", overrides={"rate_per_second": 0})
    with pytest.raises(ValidationFailed):
        tenant_quota_set(tenant=tenant, actor="x", overrides={"colour": 1})
    tenant_quota_set(tenant=tenant, actor="x", overrides={"daily_instances": 9, "max_batch": 32})
    caches_expire()
    limits = api_key_authenticate(raw_key=issued.raw_key).limits
    assert (limits.daily_instances, limits.max_batch) == (9, 32)


def test_plan_changes_are_audited_and_a_used_plan_cannot_be_deleted(tenant):
    plan = tenant.plan
    plan.monthly_instances = 123
    plan_save(plan=plan, actor="staff:dave")
    event = AuditEvent.objects.get(action="plan.update")
    assert event.detail["after"]["monthly_instances"] == 123 and event.actor == "staff:dave"
    with pytest.raises(Conflict):
        plan_delete(plan=plan, actor="staff:dave")
    spare = plan_save(plan=Plan(name="spare"), actor="staff:dave")
    plan_delete(plan=spare, actor="staff:dave")
    assert AuditEvent.objects.filter(action="plan.delete", detail__target="plan:spare").exists()
