"""API keys: storage, parsing, authentication outcomes, expiry, revocation, rotation, last use."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from audit.models import AuditEvent
from core.errors import Conflict, InvalidApiKey, MissingApiKey, ValidationFailed
from tenants.errors import ApiKeyExpired, ApiKeyRevoked, InsufficientScope, TenantSuspended
from tenants.models import ApiKey
from tenants.principal import ALL_SCOPES
from tenants.services import (
    api_key_authenticate,
    api_key_authenticate_request,
    api_key_from_headers,
    api_key_revoke,
    api_key_rotate,
    api_key_update,
    principal_require_scope,
    tenant_suspend,
    tenant_unsuspend,
)
from tenants.services import keys as keys_module
from tests.fixtures.factories import PlanFactory, TenantFactory
from tests.fixtures.tenants import caches_expire, issue_key

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _later(monkeypatch, seconds: float) -> None:
    """Move the clock the key checks use forward (no cache invalidation happens)."""
    base = time.time()
    monkeypatch.setattr(keys_module.time, "time", lambda: base + seconds)


# --- storage ------------------------------------------------------------------------------
def test_only_prefix_and_keyed_hash_are_stored(issued):
    raw = issued.raw_key
    prefix, secret = raw.split(".", 1)
    row = ApiKey.objects.get(pk=issued.key.pk)
    assert row.prefix == prefix
    assert row.key_hash == hmac.new(settings.API_KEY_PEPPER.encode(), raw.encode(), hashlib.sha256).hexdigest()
    stored = json.dumps(list(ApiKey.objects.values()), default=str)
    assert secret not in stored and raw not in stored


def test_audit_records_name_the_key_by_prefix_never_the_secret(issued):
    secret = issued.raw_key.split(".", 1)[1]
    events = AuditEvent.objects.filter(event_type=AuditEvent.Type.KEY_LIFECYCLE)
    assert events.filter(action="api_key.create", actor="test").exists()
    dump = json.dumps(list(events.values()), default=str)
    assert issued.key.prefix in dump
    assert secret not in dump
    assert issued.key.key_hash not in dump


def test_new_key_gets_every_scope_by_default_and_unknown_scopes_are_refused(tenant):
    assert sorted(issue_key(tenant).key.scopes) == sorted(ALL_SCOPES)
    with pytest.raises(ValidationFailed):
        issue_key(tenant, scopes=["predict", "admin"])


# --- headers ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("authorization", "x_api_key", "expected"),
    [
        ("Bearer maas_x.y", None, "maas_x.y"),
        ("bearer   maas_x.y  ", None, "maas_x.y"),
        (None, "maas_x.y", "maas_x.y"),
        ("Bearer maas_x.y", "maas_x.y", "maas_x.y"),
        ("Basic dXNlcjpwYXNz", None, "Basic dXNlcjpwYXNz"),
        ("Bearer", None, ""),
        (None, None, None),
        ("", "  ", None),
    ],
)
def test_api_key_from_headers(authorization, x_api_key, expected):
    assert api_key_from_headers(authorization=authorization, x_api_key=x_api_key) == expected


def test_two_different_keys_are_refused():
    with pytest.raises(InvalidApiKey):
        api_key_from_headers(authorization="Bearer maas_a.b", x_api_key="maas_c.d")


# --- authentication -----------------------------------------------------------------------
def test_authenticate_returns_the_principal_with_merged_limits(tenant):
    tenant.plan.daily_instances = 100
    tenant.plan.max_batch = 64
    tenant.plan.save()
    tenant.monthly_instances = 1000
    tenant.save()
    issued = issue_key(tenant, scopes=["predict"], allowed_models=["digits"], overrides={"max_batch": 8})
    principal = api_key_authenticate(raw_key=issued.raw_key)
    assert principal.tenant_id == tenant.pk and principal.tenant_slug == tenant.slug
    assert principal.region == "eu" and principal.identity_verified
    assert principal.approved_purposes == ("research",)
    assert principal.key_prefix == issued.key.prefix and principal.key_id == issued.key.pk
    assert principal.scopes == frozenset({"predict"})
    assert principal.allowed_models == frozenset({"digits"})
    assert principal.limits.daily_instances == 100
    assert principal.limits.monthly_instances == 1000
    assert principal.limits.max_batch == 8
    assert [s.counter_id for s in principal.quota_scopes] == [f"t:{tenant.pk}"]


def test_key_with_its_own_quota_gets_its_own_counters(tenant):
    issued = issue_key(tenant, overrides={"daily_instances": 10})
    principal = api_key_authenticate(raw_key=issued.raw_key)
    assert principal.limits.daily_instances == 10
    key_scope = principal.quota_scopes[-1]
    assert key_scope.counter_id == f"k:{issued.key.pk}"
    assert key_scope.daily_instances == 10
    assert key_scope.audit_key_prefixes == (issued.key.prefix,)


@pytest.mark.parametrize("header", ["HTTP_AUTHORIZATION", "HTTP_X_API_KEY"])
def test_authenticate_request_reads_either_header(issued, header):
    value = f"Bearer {issued.raw_key}" if header == "HTTP_AUTHORIZATION" else issued.raw_key
    principal = api_key_authenticate_request(meta={header: value, "HTTP_HOST": "testserver"})
    assert principal.key_prefix == issued.key.prefix


def test_authenticate_request_without_a_key_is_missing_and_with_two_keys_invalid(issued):
    with pytest.raises(MissingApiKey):
        api_key_authenticate_request(meta={})
    with pytest.raises(InvalidApiKey):
        api_key_authenticate_request(
            meta={"HTTP_AUTHORIZATION": f"Bearer {issued.raw_key}", "HTTP_X_API_KEY": issued.raw_key + "x"}
        )


def test_require_scope_names_the_missing_scope(tenant):
    principal = api_key_authenticate(raw_key=issue_key(tenant, scopes=["predict"]).raw_key)
    principal_require_scope(principal=principal, scope="predict")
    with pytest.raises(InsufficientScope) as info:
        principal_require_scope(principal=principal, scope="usage:read")
    assert info.value.status == 403 and info.value.code == "insufficient_scope"
    assert info.value.extra["required_scope"] == "usage:read"
    assert str(info.value.detail) == "This API key lacks the 'usage:read' scope."


def test_missing_key():
    with pytest.raises(MissingApiKey) as info:
        api_key_authenticate(raw_key=None)
    assert info.value.status == 401
    assert info.value.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("raw", ["", "garbage", "Basic dXNlcjpwYXNz", "maas_abcdefghjkmn.tooshort"])
def test_malformed_key(raw):
    with pytest.raises(InvalidApiKey) as info:
        api_key_authenticate(raw_key=raw)
    assert info.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_wrong_secret_for_a_real_prefix_and_unknown_prefix(issued):
    prefix = issued.key.prefix
    with pytest.raises(InvalidApiKey):
        api_key_authenticate(raw_key=prefix + "." + "A" * 43)
    with pytest.raises(InvalidApiKey):
        api_key_authenticate(raw_key="maas_zzzzzzzzzzzz." + "A" * 43)


def test_cache_hit_costs_no_query(issued, django_assert_num_queries, settings):
    settings.INVALIDATION_CHECK_SECONDS = 600  # keep the once-a-second generation read out of the count
    api_key_authenticate(raw_key=issued.raw_key)
    with django_assert_num_queries(0):
        for _ in range(20):
            api_key_authenticate(raw_key=issued.raw_key)


def test_revoked_key_is_refused_once_caches_expire(issued):
    api_key_authenticate(raw_key=issued.raw_key)
    api_key_revoke(key=issued.key, reason="leaked in a repository", actor="test")
    caches_expire()
    with pytest.raises(ApiKeyRevoked) as info:
        api_key_authenticate(raw_key=issued.raw_key)
    assert info.value.code == "api_key_revoked" and info.value.status == 401
    row = ApiKey.objects.get(pk=issued.key.pk)
    assert row.revoked and row.revoked_reason == "leaked in a repository" and row.revoked_at is not None
    assert AuditEvent.objects.filter(action="api_key.revoke", detail__key_prefix=row.prefix).count() == 1


def test_revocation_needs_a_reason_and_is_idempotent(issued):
    with pytest.raises(ValidationFailed):
        api_key_revoke(key=issued.key, reason=" ", actor="test")
    api_key_revoke(key=issued.key, reason="first", actor="test")
    api_key_revoke(key=issued.key, reason="second", actor="test")
    assert ApiKey.objects.get(pk=issued.key.pk).revoked_reason == "first"
    assert AuditEvent.objects.filter(action="api_key.revoke").count() == 1


def test_expired_key(tenant):
    issued = issue_key(tenant, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(ApiKeyExpired) as info:
        api_key_authenticate(raw_key=issued.raw_key)
    assert info.value.code == "api_key_expired"


def test_expiry_is_checked_on_every_request_not_only_on_load(tenant, monkeypatch):
    issued = issue_key(tenant, expires_at=datetime.now(UTC) + timedelta(seconds=60))
    api_key_authenticate(raw_key=issued.raw_key)
    _later(monkeypatch, 120)
    with pytest.raises(ApiKeyExpired):
        api_key_authenticate(raw_key=issued.raw_key)
    assert keys_module._cache.peek(issued.key.prefix) is not None  # refused from the cached entry


def test_suspended_tenant_refuses_every_key(tenant):
    first, second = issue_key(tenant), issue_key(tenant)
    tenant_suspend(tenant=tenant, reason="abuse report", actor="test")
    caches_expire()
    for issued in (first, second):
        with pytest.raises(TenantSuspended) as info:
            api_key_authenticate(raw_key=issued.raw_key)
        assert info.value.status == 403 and info.value.code == "tenant_suspended"
    tenant_unsuspend(tenant=tenant, reason="resolved", actor="test")
    caches_expire()
    assert api_key_authenticate(raw_key=first.raw_key).tenant_id == tenant.pk


def test_secret_is_checked_before_status_is_revealed(issued):
    api_key_revoke(key=issued.key, reason="r", actor="test")
    caches_expire()
    with pytest.raises(InvalidApiKey):
        api_key_authenticate(raw_key=issued.key.prefix + "." + "B" * 43)


# --- rotation -------------------------------------------------------------------------------
def test_rotation_keeps_old_key_for_the_grace_period(tenant, monkeypatch):
    old = issue_key(
        tenant, scopes=["predict", "usage:read"], allowed_models=["digits"], overrides={"daily_instances": 7}
    )
    new = api_key_rotate(key=old.key, actor="test", grace_hours=1)
    caches_expire()
    assert new.raw_key != old.raw_key
    assert sorted(new.key.scopes) == ["predict", "usage:read"]
    assert new.key.allowed_models == ["digits"]
    assert new.key.daily_instances == 7
    assert new.key.rotated_from_id == old.key.pk
    assert new.key.lineage_id == old.key.pk
    assert api_key_authenticate(raw_key=old.raw_key).key_prefix == old.key.prefix
    assert api_key_authenticate(raw_key=new.raw_key).key_prefix == new.key.prefix
    _later(monkeypatch, 3601)
    with pytest.raises(ApiKeyExpired):
        api_key_authenticate(raw_key=old.raw_key)
    assert api_key_authenticate(raw_key=new.raw_key).key_prefix == new.key.prefix


def test_rotation_with_zero_grace_refuses_the_old_key_at_once(issued):
    new = api_key_rotate(key=issued.key, actor="test", grace_hours=0)
    caches_expire()
    with pytest.raises(ApiKeyExpired):
        api_key_authenticate(raw_key=issued.raw_key)
    api_key_authenticate(raw_key=new.raw_key)


def test_default_grace_comes_from_settings(issued, settings):
    settings.API_KEY_ROTATION_GRACE_HOURS = 24
    api_key_rotate(key=issued.key, actor="test")
    grace = ApiKey.objects.get(pk=issued.key.pk).grace_until - datetime.now(UTC)
    assert timedelta(hours=23, minutes=59) < grace <= timedelta(hours=24)


def test_rotation_never_revives_a_key(tenant):
    rotated = issue_key(tenant)
    api_key_rotate(key=rotated.key, actor="test")
    with pytest.raises(Conflict):
        api_key_rotate(key=rotated.key, actor="test")
    revoked = issue_key(tenant)
    api_key_revoke(key=revoked.key, reason="r", actor="test")
    with pytest.raises(Conflict):
        api_key_rotate(key=revoked.key, actor="test")
    with pytest.raises(ValidationFailed):
        api_key_rotate(key=issue_key(tenant).key, actor="test", grace_hours=-1)


def test_rotation_is_audited_on_both_keys(issued):
    new = api_key_rotate(key=issued.key, actor="command:rotate_api_key", grace_hours=2)
    assert AuditEvent.objects.filter(action="api_key.rotate", detail__key_prefix=new.key.prefix).exists()
    out = AuditEvent.objects.get(action="api_key.rotate_out")
    assert out.actor == "command:rotate_api_key"
    assert out.detail["before"]["grace_until"] is None and out.detail["after"]["grace_until"]
    assert out.detail["successor"] == new.key.prefix


# --- last use -------------------------------------------------------------------------------
def test_last_used_is_written_at_most_once_a_minute(issued, monkeypatch, django_assert_num_queries, settings):
    settings.INVALIDATION_CHECK_SECONDS = 600
    api_key_authenticate(raw_key=issued.raw_key)
    first = ApiKey.objects.get(pk=issued.key.pk).last_used_at
    assert first is not None
    with django_assert_num_queries(0):
        for _ in range(50):
            api_key_authenticate(raw_key=issued.raw_key)
    _later(monkeypatch, 61)
    with django_assert_num_queries(1):
        api_key_authenticate(raw_key=issued.raw_key)
    assert ApiKey.objects.get(pk=issued.key.pk).last_used_at > first


def test_another_process_recently_touched_key_is_not_written_again(issued):
    recent = datetime.now(UTC) - timedelta(seconds=5)
    ApiKey.objects.filter(pk=issued.key.pk).update(last_used_at=recent)
    api_key_authenticate(raw_key=issued.raw_key)
    assert ApiKey.objects.get(pk=issued.key.pk).last_used_at == recent


# --- changes ---------------------------------------------------------------------------------
def test_key_update_changes_scopes_and_limits_and_is_audited(issued):
    api_key_update(key=issued.key, actor="staff:alice", scopes=["predict"], max_batch=4)
    caches_expire()
    principal = api_key_authenticate(raw_key=issued.raw_key)
    assert principal.scopes == frozenset({"predict"})
    assert principal.limits.max_batch == 4
    event = AuditEvent.objects.get(action="api_key.update")
    assert event.actor == "staff:alice"
    assert event.detail["before"]["max_batch"] is None and event.detail["after"]["max_batch"] == 4
    with pytest.raises(ValidationFailed):
        api_key_update(key=issued.key, actor="x", prefix="maas_other")


def test_plan_change_reaches_cached_principals(tenant):
    issued = issue_key(tenant)
    assert api_key_authenticate(raw_key=issued.raw_key).limits.daily_instances is None
    from tenants.services import plan_save

    plan = tenant.plan
    plan.daily_instances = 42
    plan_save(plan=plan, actor="staff:bob")
    caches_expire()
    assert api_key_authenticate(raw_key=issued.raw_key).limits.daily_instances == 42


def test_keys_of_other_tenants_are_separate(db):
    a, b = TenantFactory(plan=PlanFactory()), TenantFactory(plan=PlanFactory())
    key_a, key_b = issue_key(a), issue_key(b)
    assert api_key_authenticate(raw_key=key_a.raw_key).tenant_id == a.pk
    assert api_key_authenticate(raw_key=key_b.raw_key).tenant_id == b.pk
