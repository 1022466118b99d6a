"""Quota enforcement on both backends: exact counters, all-or-nothing, refunds, rate, headers, rebuild."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from audit.services import audit_event_record
from core.errors import RateLimited
from tenants.errors import QuotaExceeded
from tenants.principal import Limits, Principal
from tenants.selectors import quota_usage_current
from tenants.services import (
    api_key_authenticate,
    api_key_rotate,
    quota_refund,
    quota_refund_state,
    quota_reserve,
    quota_state_of,
    quotas,
    tenant_quota_set,
)
from tests.fixtures.factories import PlanFactory, TenantFactory
from tests.fixtures.tenants import caches_expire, issue_key

pytestmark = pytest.mark.django_db


def _principal(daily=None, monthly=None, rate=None, burst=None, **key_overrides):
    tenant = TenantFactory(
        plan=PlanFactory(daily_instances=daily, monthly_instances=monthly, rate_per_second=rate, burst=burst)
    )
    issued = issue_key(tenant, overrides=key_overrides or None)
    return api_key_authenticate(raw_key=issued.raw_key)


def _used(principal, period="daily", scope="tenant") -> int:
    usage = quota_usage_current(scopes=principal.effective_quota_scopes())
    return next(u.used for u in usage if u.period == period and u.scope == scope)


def _charge(principal, units: int) -> None:
    """What the pipeline does after admission: write the durable record with the units."""
    audit_event_record(
        event_type="request",
        tenant_id=principal.tenant_id,
        tenant_slug=principal.tenant_slug,
        key_prefix=principal.key_prefix,
        http_status=200,
        units=units,
    )


def test_daily_quota_admits_exactly_the_limit(quota_backend):
    principal = _principal(daily=5)
    for _ in range(5):
        quota_reserve(principal=principal, units=1)
    with pytest.raises(QuotaExceeded) as info:
        quota_reserve(principal=principal, units=1)
    error = info.value
    assert error.status == 429 and error.code == "quota_exceeded"
    assert error.extra["limit"] == "daily"
    assert error.extra["used"] == 5 and error.extra["quota"] == 5
    assert 1 <= int(error.headers["Retry-After"]) <= 86400
    assert error.headers["RateLimit-Remaining"] == "0"
    assert _used(principal) == 5


def test_a_refused_batch_consumes_nothing(quota_backend):
    principal = _principal(daily=10)
    quota_reserve(principal=principal, units=7)
    with pytest.raises(QuotaExceeded):
        quota_reserve(principal=principal, units=4)
    assert _used(principal) == 7
    quota_reserve(principal=principal, units=3)
    assert _used(principal) == 10


def test_refused_monthly_check_rolls_back_the_daily_counter(quota_backend):
    principal = _principal(daily=100, monthly=3)
    quota_reserve(principal=principal, units=3)
    with pytest.raises(QuotaExceeded) as info:
        quota_reserve(principal=principal, units=1)
    assert info.value.extra["limit"] == "monthly"
    assert _used(principal, "daily") == 3
    assert _used(principal, "monthly") == 3


def test_refund_returns_instances(quota_backend):
    principal = _principal(daily=5)
    reservation = quota_reserve(principal=principal, units=5)
    quota_refund(reservation=reservation, units=2)
    assert _used(principal) == 3
    assert reservation.charged_units == 3
    quota_refund(reservation=reservation)
    quota_refund(reservation=reservation)  # nothing left to refund: no effect
    assert _used(principal) == 0
    assert reservation.charged_units == 0
    quota_reserve(principal=principal, units=5)


def test_refund_from_a_stored_state(quota_backend):
    principal = _principal(daily=10)
    reservation = quota_reserve(principal=principal, units=8)
    state = quota_state_of(reservation=reservation)
    quota_refund_state(state=state, units=5)
    assert _used(principal) == 3
    quota_refund_state(state=state, units=100)  # capped at what was reserved
    assert _used(principal) == 0


def test_rate_limit_with_burst(quota_backend):
    principal = _principal(daily=100, rate=0.01, burst=2)
    quota_reserve(principal=principal, units=1)
    quota_reserve(principal=principal, units=1)
    with pytest.raises(RateLimited) as info:
        quota_reserve(principal=principal, units=1)
    error = info.value
    assert error.code == "rate_limited" and error.status == 429
    assert error.extra["limit"] == "rate"
    assert int(error.headers["Retry-After"]) >= 1
    assert _used(principal) == 2  # the refused request charged no instances


@pytest.mark.embedded
def test_rate_limit_refills_on_an_injected_clock(settings, monkeypatch):
    """The database bucket reads ``quota_now``: time is stepped, so the machine's speed cannot matter."""
    settings.REDIS_URL = ""
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    current = [start]
    monkeypatch.setattr(quotas, "quota_now", lambda: current[0])
    principal = _principal(rate=1000.0, burst=1)
    quota_reserve(principal=principal, units=1)
    with pytest.raises(RateLimited):
        quota_reserve(principal=principal, units=1)
    current[0] = start + timedelta(microseconds=900)
    with pytest.raises(RateLimited):
        quota_reserve(principal=principal, units=1)
    # 2 ms, not 1: epoch seconds near 1.7e9 carry ~2e-7 s of float error.
    current[0] = start + timedelta(milliseconds=2)
    quota_reserve(principal=principal, units=1)
    # A clock that goes backwards (NTP step) never mints tokens.
    current[0] = start
    with pytest.raises(RateLimited):
        quota_reserve(principal=principal, units=1)


def test_rate_limit_refills_on_redis_time(redis_clean):
    """Redis' clock cannot be injected: a rate slow enough (one token per 2 s) that no machine is too slow.

    Two back-to-back calls are always refused the second time; the refill is
    then awaited by polling with a bound, never by a fixed sleep.
    """
    principal = _principal(rate=0.5, burst=1)
    quota_reserve(principal=principal, units=1)
    with pytest.raises(RateLimited) as info:
        quota_reserve(principal=principal, units=1)
    assert 1 <= int(info.value.headers["Retry-After"]) <= 2
    deadline = time.monotonic() + 30
    while True:
        try:
            quota_reserve(principal=principal, units=1)
            break
        except RateLimited:
            assert time.monotonic() < deadline, "the bucket never refilled"
            time.sleep(0.05)


def test_ratelimit_headers_describe_the_tightest_limit(quota_backend):
    principal = _principal(daily=10, monthly=1000)
    reservation = quota_reserve(principal=principal, units=3)
    headers = reservation.headers()
    assert headers["RateLimit-Limit"] == "10"
    assert headers["RateLimit-Remaining"] == "7"
    assert 1 <= int(headers["RateLimit-Reset"]) <= 86400
    assert "10;w=86400" in headers["RateLimit-Policy"] and "1000;w=" in headers["RateLimit-Policy"]


def test_unlimited_tenant_has_no_counters_and_no_headers(quota_backend):
    principal = _principal()
    reservation = quota_reserve(principal=principal, units=10_000)
    assert reservation.headers() == {}
    assert not reservation.fail_open


def test_other_tenant_is_unaffected(quota_backend):
    exhausted = _principal(daily=2)
    other = _principal(daily=3)
    quota_reserve(principal=exhausted, units=2)
    with pytest.raises(QuotaExceeded):
        quota_reserve(principal=exhausted, units=1)
    quota_reserve(principal=other, units=3)
    assert _used(other) == 3 and _used(exhausted) == 2


def test_key_quota_and_tenant_quota_both_hold(quota_backend):
    tenant = TenantFactory(plan=PlanFactory(daily_instances=5))
    limited = api_key_authenticate(raw_key=issue_key(tenant, overrides={"daily_instances": 2}).raw_key)
    plain = api_key_authenticate(raw_key=issue_key(tenant).raw_key)
    quota_reserve(principal=limited, units=2)
    with pytest.raises(QuotaExceeded) as info:
        quota_reserve(principal=limited, units=1)
    assert info.value.extra["scope"] == "key"
    quota_reserve(principal=plain, units=3)
    with pytest.raises(QuotaExceeded) as info:
        quota_reserve(principal=plain, units=1)
    assert info.value.extra["scope"] == "tenant"


def test_rotation_does_not_reset_a_key_budget(quota_backend):
    tenant = TenantFactory(plan=PlanFactory())
    old = issue_key(tenant, overrides={"daily_instances": 3})
    old_principal = api_key_authenticate(raw_key=old.raw_key)
    quota_reserve(principal=old_principal, units=3)
    _charge(old_principal, 3)
    new = api_key_rotate(key=old.key, actor="test")
    caches_expire()
    with pytest.raises(QuotaExceeded):
        quota_reserve(principal=api_key_authenticate(raw_key=new.raw_key), units=1)


def test_override_change_takes_effect(quota_backend):
    tenant = TenantFactory(plan=PlanFactory(daily_instances=1))
    issued = issue_key(tenant)
    quota_reserve(principal=api_key_authenticate(raw_key=issued.raw_key), units=1)
    tenant_quota_set(tenant=tenant, actor="test", overrides={"daily_instances": 3})
    caches_expire()
    principal = api_key_authenticate(raw_key=issued.raw_key)
    quota_reserve(principal=principal, units=2)
    with pytest.raises(QuotaExceeded) as info:
        quota_reserve(principal=principal, units=1)
    assert info.value.extra["quota"] == 3
    assert _used(principal) == 3


def test_lost_counter_is_rebuilt_from_the_durable_record(quota_backend, redis_or_none):
    principal = _principal(daily=5)
    quota_reserve(principal=principal, units=3)
    _charge(principal, 3)
    # Lose the live counter: FLUSHDB on Redis, the counter rows on the database backend.
    if redis_or_none is not None:
        redis_or_none.flushdb()
    else:
        from tenants.models import QuotaCounter

        QuotaCounter.objects.all().delete()
    quota_reserve(principal=principal, units=2)
    with pytest.raises(QuotaExceeded):
        quota_reserve(principal=principal, units=1)


def test_refunded_units_do_not_come_back_after_a_rebuild(quota_backend, redis_or_none):
    principal = _principal(daily=4)
    reservation = quota_reserve(principal=principal, units=4)
    quota_refund(reservation=reservation)
    _charge(principal, reservation.charged_units)  # 0: the pipeline writes net units
    # Lose the live counter on either backend, so the rebuild path runs on both.
    if redis_or_none is not None:
        redis_or_none.flushdb()
    else:
        from tenants.models import QuotaCounter

        QuotaCounter.objects.all().delete()
    quota_reserve(principal=principal, units=4)
    with pytest.raises(QuotaExceeded):
        quota_reserve(principal=principal, units=1)
    assert _used(principal) == 4


def test_units_must_be_a_non_negative_int():
    principal = Principal(
        tenant_id=1,
        tenant_slug="t",
        region="eu",
        identity_verified=True,
        approved_purposes=(),
        key_id=1,
        key_prefix="maas_x",
        scopes=frozenset(),
        limits=Limits(daily_instances=1),
    )
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError):
            quota_reserve(principal=principal, units=bad)


@pytest.fixture
def redis_or_none(quota_backend):
    """The Redis client when the test runs on Redis, else ``None``."""
    if quota_backend != "redis":
        return None
    from core.redis import redis_client

    return redis_client()


def test_admission_scales_redis_tokens_and_remembers_redis_keys():
    from tenants.principal import QuotaScope
    from tenants.quota.types import quota_admission, quota_checks

    now = datetime(2030, 3, 10, 12, tzinfo=UTC)
    scope = QuotaScope(counter_id="t:1", tenant_id=1, rate_per_second=1.0, burst=10, daily_instances=50)
    checks = quota_checks((scope,), now)
    db_policies, db_charges = quota_admission(checks=checks, values=[7.5, 20], now=now)
    redis_policies, redis_charges = quota_admission(
        checks=checks, values=[7500, 20], now=now, redis_keys=["bucket", "counter"], token_scale=1000.0
    )
    assert db_policies == redis_policies
    assert [(p.name, p.remaining) for p in db_policies] == [("rate", 7), ("daily", 30)]
    assert [c.redis_key for c in db_charges] == [""]  # the spent rate token is never charged
    assert [c.redis_key for c in redis_charges] == ["counter"]
