"""Management commands for admins who script; every change is audited as ``command:<name>``."""

from __future__ import annotations

import io
import stat

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEvent
from tenants.models import ApiKey, Plan, Tenant
from tenants.services import api_key_authenticate, api_key_revoke
from tests.fixtures.tenants import caches_expire

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def run(*args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue()


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_create_tenant_defaults_to_the_standard_plan():
    run("create_tenant", "acme", "--name", "Acme Corp", "--region", "cn", "--verified", "--purposes", "research")
    tenant = Tenant.objects.get(slug="acme")
    assert tenant.name == "Acme Corp" and tenant.region == "cn"
    assert tenant.identity_verified and tenant.verified_by == "command:create_tenant" and tenant.verified_at
    assert tenant.approved_purposes == ["research"]
    assert tenant.plan.name == "standard" and tenant.plan.daily_instances == 1_000_000
    event = AuditEvent.objects.get(action="tenant.create")
    assert event.actor == "command:create_tenant" and event.tenant_slug == "acme"


def test_create_tenant_errors():
    run("create_tenant", "acme")
    with pytest.raises(CommandError, match="already exists"):
        run("create_tenant", "acme")
    with pytest.raises(CommandError, match="No plan"):
        run("create_tenant", "other", "--plan", "gold")
    with pytest.raises(CommandError, match="slug"):
        run("create_tenant", "Bad_Slug")


def test_create_api_key_prints_the_key_alone_on_the_last_line():
    run("create_tenant", "acme")
    out = run(
        "create_api_key",
        "acme",
        "--name",
        "ci",
        "--scopes",
        "predict",
        "usage:read",
        "--models",
        "digits",
        "--expires-days",
        "30",
    )
    raw = last_line(out)
    principal = api_key_authenticate(raw_key=raw)
    assert principal.tenant_slug == "acme"
    assert principal.scopes == frozenset({"predict", "usage:read"})
    assert principal.allowed_models == frozenset({"digits"})
    key = ApiKey.objects.get(prefix=principal.key_prefix)
    assert key.name == "ci" and key.expires_at is not None and key.created_by == "command:create_api_key"
    assert AuditEvent.objects.get(action="api_key.create").actor == "command:create_api_key"
    with pytest.raises(CommandError, match="Unknown scope"):
        run("create_api_key", "acme", "--scopes", "root")


def test_set_quota_sets_and_clears_overrides():
    run("create_tenant", "acme")
    run(
        "set_quota",
        "acme",
        "--rate",
        "5",
        "--burst",
        "10",
        "--daily",
        "50",
        "--monthly",
        "500",
        "--max-batch",
        "16",
        "--max-body-bytes",
        "1000",
        "--max-jobs",
        "1",
    )
    tenant = Tenant.objects.get(slug="acme")
    assert (tenant.rate_per_second, tenant.burst, tenant.daily_instances, tenant.monthly_instances) == (
        5.0,
        10,
        50,
        500,
    )
    assert (tenant.max_batch, tenant.max_body_bytes, tenant.max_concurrent_jobs) == (16, 1000, 1)
    event = AuditEvent.objects.get(action="tenant.quota_set")
    assert event.actor == "command:set_quota"
    assert event.detail["before"]["daily_instances"] is None and event.detail["after"]["daily_instances"] == 50
    run("set_quota", "acme", "--daily", "inherit")
    assert Tenant.objects.get(slug="acme").daily_instances is None
    with pytest.raises(CommandError):
        run("set_quota", "acme", "--daily", "-3")
    with pytest.raises(CommandError, match="at least one"):
        run("set_quota", "acme")


def test_set_quota_for_one_key():
    run("create_tenant", "acme")
    raw = last_line(run("create_api_key", "acme"))
    prefix = raw.split(".")[0]
    run("set_quota", "acme", "--key", prefix, "--daily", "3")
    caches_expire()
    principal = api_key_authenticate(raw_key=raw)
    assert principal.limits.daily_instances == 3
    assert principal.quota_scopes[-1].counter_id.startswith("k:")
    run("create_tenant", "other")
    with pytest.raises(CommandError, match="does not belong"):
        run("set_quota", "other", "--key", prefix, "--daily", "1")


def test_revoke_and_rotate():
    run("create_tenant", "acme")
    first = last_line(run("create_api_key", "acme"))
    new = last_line(run("rotate_api_key", first.split(".")[0], "--grace-hours", "2"))
    caches_expire()
    assert api_key_authenticate(raw_key=first).tenant_slug == "acme"  # still within its grace period
    assert api_key_authenticate(raw_key=new).tenant_slug == "acme"
    assert AuditEvent.objects.filter(action="api_key.rotate", actor="command:rotate_api_key").exists()
    out = run("revoke_api_key", new.split(".")[0], "--reason", "laptop stolen")
    assert "revoked" in out
    key = ApiKey.objects.get(prefix=new.split(".")[0])
    assert key.revoked and key.revoked_reason == "laptop stolen"
    assert AuditEvent.objects.get(action="api_key.revoke").actor == "command:revoke_api_key"
    with pytest.raises(CommandError, match="No API key"):
        run("revoke_api_key", "maas_nosuchkey1")
    with pytest.raises(CommandError, match="conflict"):
        run("rotate_api_key", new.split(".")[0])


def test_suspend_and_unsuspend():
    run("create_tenant", "acme")
    raw = last_line(run("create_api_key", "acme"))
    run("suspend_tenant", "acme", "--reason", "payment overdue")
    tenant = Tenant.objects.get(slug="acme")
    assert tenant.status == "suspended" and tenant.suspended_reason == "payment overdue"
    event = AuditEvent.objects.get(action="tenant.suspend")
    assert event.actor == "command:suspend_tenant" and event.detail["reason"] == "payment overdue"
    caches_expire()
    from tenants.errors import TenantSuspended

    with pytest.raises(TenantSuspended):
        api_key_authenticate(raw_key=raw)
    run("unsuspend_tenant", "acme", "--reason", "paid")
    assert Tenant.objects.get(slug="acme").status == "active"
    assert AuditEvent.objects.get(action="tenant.unsuspend").actor == "command:unsuspend_tenant"
    with pytest.raises(CommandError):
        run("suspend_tenant", "acme")  # --reason is required


def test_ensure_demo_tenant_is_idempotent(tmp_path):
    key_file = tmp_path / "demo-api-key"
    first = last_line(run("ensure_demo_tenant", "--key-file", str(key_file)))
    assert key_file.read_text().strip() == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    tenant = Tenant.objects.get(slug="demo")
    assert tenant.region == "eu" and tenant.identity_verified
    assert tenant.approved_purposes == ["research", "evaluation", "demo"]
    plan = Plan.objects.get(name="standard")
    assert (plan.rate_per_second, plan.burst, plan.max_batch) == (200.0, 400, 1024)
    principal = api_key_authenticate(raw_key=first)
    assert principal.scopes >= {"predict", "jobs", "usage:read"}

    assert last_line(run("ensure_demo_tenant", "--key-file", str(key_file))) == first
    assert ApiKey.objects.filter(tenant=tenant).count() == 1

    api_key_revoke(key=ApiKey.objects.get(prefix=principal.key_prefix), reason="test", actor="test")
    caches_expire()
    replacement = last_line(run("ensure_demo_tenant", "--key-file", str(key_file)))
    assert replacement != first
    assert key_file.read_text().strip() == replacement
    assert api_key_authenticate(raw_key=replacement).tenant_slug == "demo"
    assert Tenant.objects.filter(slug="demo").count() == 1
