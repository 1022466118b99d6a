"""Usage rollups: exact against a direct count of the audit events, across interleavings, late commits and crashes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import Max
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from audit.models import AuditEvent
from audit.services import audit_event_record
from tenants.models import QuotaCounter, UsageRollup, UsageRollupWatermark
from tenants.selectors import (
    usage_summary,
    usage_summary_from_events,
    usage_units_since,
    usage_units_since_from_events,
)
from tenants.services import usage_rollups
from tenants.services.usage_rollups import EVENT_FIELDS, rollup_groups, usage_rollups_advance
from tenants.tasks import usage_rollups_advance_task
from tests.fixtures.factories import PlanFactory, TenantFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

DAY = datetime(2030, 3, 10, tzinfo=UTC)
KEYS = ("maas_a", "maas_b", "")
MODELS = (("digits", 1), ("digits", 2), ("iris", None), ("", None))
OUTCOMES = ((200, ""), (429, "quota_exceeded"), (403, "policy_denied"), (503, "audit_unavailable"), (None, ""))


@pytest.fixture(autouse=True)
def _no_lag(settings):
    """Roll up to the newest event: these tests make late commits themselves instead of waiting for them."""
    settings.AUDIT_SEAL_LAG_SECONDS = 0.0


def _event(tenant, when, **fields):
    fields.setdefault("http_status", 200)
    return audit_event_record(
        event_type=fields.pop("event_type", "request"),
        tenant_id=tenant.pk,
        tenant_slug=tenant.slug,
        occurred_at=when,
        **fields,
    )


def _periods():
    """Whole days (what every caller reads), whole hours, ragged minutes and an open end."""
    return [
        (DAY, DAY + timedelta(days=3)),
        (DAY + timedelta(days=1), DAY + timedelta(days=2)),
        (DAY + timedelta(hours=5), DAY + timedelta(days=1, hours=7)),
        (DAY + timedelta(hours=3, minutes=17), DAY + timedelta(days=2, hours=1, minutes=3)),
        (DAY + timedelta(hours=2, minutes=5), DAY + timedelta(hours=2, minutes=50)),
    ]


def _assert_exact(tenant):
    for since, until in _periods():
        assert usage_summary(tenant=tenant, since=since, until=until) == usage_summary_from_events(
            tenant=tenant, since=since, until=until
        )
        for key in KEYS:
            assert usage_summary(tenant=tenant, since=since, until=until, key_prefix=key) == (
                usage_summary_from_events(tenant=tenant, since=since, until=until, key_prefix=key)
            )
        for prefixes in ((), ("maas_a",), ("maas_a", "maas_b")):
            assert usage_units_since(tenant_id=tenant.pk, since=since, key_prefixes=prefixes) == (
                usage_units_since_from_events(tenant_id=tenant.pk, since=since, key_prefixes=prefixes)
            )


def _assert_rollups_are_a_direct_count(tenant):
    """After a complete advance the rollup rows are exactly the events folded once."""
    usage_rollups_advance()
    events = AuditEvent.objects.filter(tenant_id=tenant.pk).order_by("seq").values_list(*EVENT_FIELDS)
    expected = rollup_groups(events)
    dimensions = usage_rollups.DIMENSIONS
    measures = usage_rollups.MEASURES
    stored = {
        tuple(getattr(r, d) for d in dimensions): [getattr(r, m) for m in measures]
        for r in UsageRollup.objects.filter(tenant_id=tenant.pk)
    }
    assert stored == expected


event_specs = st.fixed_dictionaries(
    {
        "minute": st.integers(min_value=0, max_value=3 * 24 * 60 - 1),
        "key": st.sampled_from(KEYS),
        "model": st.sampled_from(MODELS),
        "outcome": st.sampled_from(OUTCOMES),
        "units": st.integers(min_value=-5, max_value=70),
        # Quarters are exact in binary, so latency sums do not depend on the order of addition.
        "latency": st.one_of(st.none(), st.integers(min_value=0, max_value=4000).map(lambda q: q / 4)),
        "job": st.booleans(),
    }
)
operations = st.lists(
    st.one_of(
        event_specs.map(lambda spec: ("write", spec)),
        st.integers(min_value=1, max_value=7).map(lambda size: ("advance", size)),
        st.integers(min_value=1, max_value=3).map(lambda n: ("crash", n)),
    ),
    max_size=40,
)


def _write(tenant, spec):
    name, version = spec["model"]
    status, code = spec["outcome"]
    fields = {"key_prefix": spec["key"], "model_name": name, "model_version": version, "units": spec["units"]}
    if spec["job"]:
        return _event(tenant, DAY + timedelta(minutes=spec["minute"]), event_type="job", http_status=None, **fields)
    return _event(
        tenant,
        DAY + timedelta(minutes=spec["minute"]),
        http_status=status,
        error_code=code,
        latency_ms=spec["latency"],
        **fields,
    )


def _crashing_advance(monkeypatch, after_batches: int, batch_size: int = 2):
    """Run an advance that dies in its ``after_batches``-th batch transaction, after the rollup rows were written."""
    real = usage_rollups._watermark_commit
    calls = {"n": 0}

    def dying(row, **kwargs):
        calls["n"] += 1
        if calls["n"] >= after_batches:
            raise RuntimeError("worker killed mid-batch")
        return real(row, **kwargs)

    monkeypatch.setattr(usage_rollups, "_watermark_commit", dying)
    try:
        usage_rollups_advance(batch_size=batch_size)
    except RuntimeError:
        pass
    finally:
        monkeypatch.setattr(usage_rollups, "_watermark_commit", real)


@hsettings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
def test_rollups_equal_the_events_after_any_interleaving(ops, monkeypatch):
    tenant = TenantFactory(plan=PlanFactory())
    for op, arg in ops:
        if op == "write":
            _write(tenant, arg)
        elif op == "advance":
            usage_rollups_advance(batch_size=arg)
        else:
            _crashing_advance(monkeypatch, after_batches=arg)
    _assert_exact(tenant)
    _assert_rollups_are_a_direct_count(tenant)
    _assert_exact(tenant)


def test_a_crash_between_batches_counts_nothing_twice(monkeypatch):
    tenant = TenantFactory(plan=PlanFactory())
    for minute in range(9):
        _event(tenant, DAY + timedelta(minutes=7 * minute), units=minute + 1, key_prefix="maas_a", latency_ms=1.5)
    _crashing_advance(monkeypatch, after_batches=3, batch_size=2)
    watermark = UsageRollupWatermark.objects.get()
    # Two batches committed (four events), the third rolled back with its rollup rows.
    assert UsageRollup.objects.filter(tenant_id=tenant.pk, granularity="day").get().requests == 4
    _assert_exact(tenant)
    rerun = usage_rollups_advance(batch_size=2)
    assert rerun.events == 5
    assert UsageRollupWatermark.objects.get().version == watermark.version + 3
    assert UsageRollup.objects.filter(tenant_id=tenant.pk, granularity="day").get().requests == 9
    assert usage_rollups_advance().events == 0  # idempotent: a second run finds nothing new
    _assert_exact(tenant)
    _assert_rollups_are_a_direct_count(tenant)


def _reserved_seq() -> int:
    """Take the next sequence number the way an INSERT does, without committing an event for it yet."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval(pg_get_serial_sequence('audit_auditevent', 'seq'))")
            return int(cursor.fetchone()[0])
    # SQLite has one writer and no late commits; an explicit seq below the newest one is the same picture.
    top = AuditEvent.objects.aggregate(top=Max("seq"))["top"] or 0
    return top + 1


def _late_event(tenant, seq, when, **fields):
    AuditEvent(
        seq=seq, event_type="request", tenant_id=tenant.pk, tenant_slug=tenant.slug, occurred_at=when, **fields
    ).save()


def test_a_late_commit_below_the_watermark_is_counted_once():
    tenant = TenantFactory(plan=PlanFactory())
    _event(tenant, DAY + timedelta(hours=1), units=3, key_prefix="maas_a")
    held = _reserved_seq()  # taken by a transaction that commits later
    if connection.vendor == "sqlite":
        _late_event(tenant, held + 1, DAY + timedelta(hours=1), units=5, http_status=200, key_prefix="maas_a")
    else:
        _event(tenant, DAY + timedelta(hours=1), units=5, key_prefix="maas_a")
    first = usage_rollups_advance()
    assert first.gaps >= 1
    assert UsageRollupWatermark.objects.get().last_seq > held
    _late_event(tenant, held, DAY + timedelta(hours=2), units=11, http_status=429, error_code="quota_exceeded")
    # Read before any advance: the gap's event comes from the tail.
    assert usage_summary(tenant=tenant, since=DAY, until=DAY + timedelta(days=1)).instances == 19
    _assert_exact(tenant)
    second = usage_rollups_advance()
    assert second.late_events == 1
    assert held not in [seq for first_, last, _ in UsageRollupWatermark.objects.get().gaps for seq in (first_, last)]
    assert usage_rollups_advance().late_events == 0
    assert usage_summary(tenant=tenant, since=DAY, until=DAY + timedelta(days=1)).instances == 19
    _assert_exact(tenant)
    _assert_rollups_are_a_direct_count(tenant)


def test_a_gap_is_forgotten_after_its_ttl(settings):
    settings.USAGE_ROLLUP_GAP_TTL_SECONDS = 0.0
    tenant = TenantFactory(plan=PlanFactory())
    held = _reserved_seq()
    if connection.vendor == "sqlite":
        _late_event(tenant, held + 1, DAY, units=1, http_status=200)
    else:
        _event(tenant, DAY, units=1)
    usage_rollups_advance()
    assert UsageRollupWatermark.objects.get().gaps
    assert usage_rollups_advance().expired_gaps >= 1
    assert UsageRollupWatermark.objects.get().gaps == []


def test_the_horizon_leaves_events_younger_than_the_seal_lag(settings):
    settings.AUDIT_SEAL_LAG_SECONDS = 3600.0
    tenant = TenantFactory(plan=PlanFactory())
    _event(tenant, DAY, units=4)
    assert usage_rollups_advance().events == 0
    assert not UsageRollup.objects.filter(tenant_id=tenant.pk).exists()
    # Not yet rolled up, still counted: the tail.
    assert usage_units_since(tenant_id=tenant.pk, since=DAY) == 4


def test_usage_is_exact_up_to_the_last_request():
    tenant = TenantFactory(plan=PlanFactory())
    _event(tenant, DAY + timedelta(hours=1), units=2, key_prefix="maas_a", model_name="digits", model_version=1)
    usage_rollups_advance()
    _event(tenant, DAY + timedelta(hours=1), units=7, key_prefix="maas_b", model_name="digits", model_version=1)
    summary = usage_summary(tenant=tenant, since=DAY, until=DAY + timedelta(days=1))
    assert (summary.requests, summary.instances) == (2, 9)
    assert [(k.label, k.instances) for k in summary.keys] == [("maas_a", 2), ("maas_b", 7)]
    _assert_exact(tenant)


def test_usage_history_survives_the_retention_purge(settings, tmp_path):
    """Rollups outlive events: the real purge removes a sealed block of old events, usage stays the same."""
    from django.utils import timezone

    from audit.services import audit_purge, audit_seal

    settings.AUDIT_SEAL_BLOCK_SIZE = 5
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path / "checkpoints")
    settings.AUDIT_CHECKPOINT_SINKS = []
    tenant = TenantFactory(plan=PlanFactory())
    old_day = (timezone.now() - timedelta(days=400)).replace(hour=0, minute=0, second=0, microsecond=0)
    first_seal = audit_seal()  # whatever earlier tests left, sealed into blocks of its own
    old = [
        _event(tenant, old_day + timedelta(hours=i), units=i + 1, key_prefix="maas_a", latency_ms=float(i))
        for i in range(5)
    ]
    assert audit_seal().events == 5, first_seal
    usage_rollups_advance()
    period = {"since": old_day, "until": old_day + timedelta(days=1)}
    before = usage_summary(tenant=tenant, **period)
    assert (before.requests, before.instances) == (5, 15)
    assert audit_purge(actor="system:test").events >= 5
    assert not AuditEvent.objects.filter(seq__in=[e.seq for e in old]).exists()
    assert usage_summary(tenant=tenant, **period) == before
    assert usage_units_since(tenant_id=tenant.pk, since=old_day) == 15


def test_stale_watermark_version_makes_the_read_retry(monkeypatch):
    tenant = TenantFactory(plan=PlanFactory())
    _event(tenant, DAY, units=5)
    from tenants import usage_rows

    versions = iter([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    monkeypatch.setattr(usage_rows, "watermark_version", lambda: next(versions))
    # Every attempt sees the watermark move: the read falls back to the events, still exact.
    assert usage_units_since(tenant_id=tenant.pk, since=DAY) == 5


def test_the_beat_task_is_scheduled_and_advances(settings):
    tenant = TenantFactory(plan=PlanFactory())
    _event(tenant, DAY, units=5)
    assert "tenants.usage_rollups_advance" in {e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()}
    assert usage_rollups_advance_task.name == "tenants.usage_rollups_advance"
    assert usage_rollups_advance_task.apply().get()["events"] >= 1
    assert UsageRollup.objects.filter(tenant_id=tenant.pk).exists()


def test_a_bad_batch_size_is_refused():
    with pytest.raises(ValueError, match="batch_size"):
        usage_rollups_advance(batch_size=-1)


def test_monthly_quota_rebuild_reads_rollups_and_equals_the_full_sum():
    from tenants.selectors import quota_usage_current, tenant_quota_scope

    tenant = TenantFactory(plan=PlanFactory(monthly_instances=10_000, daily_instances=5_000))
    now = datetime.now(UTC)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for i in range(12):
        _event(tenant, month + (now - month) * (i / 12), units=10 + i, key_prefix="maas_a")
    _event(tenant, month - timedelta(seconds=1), units=999)  # last month: not in this month's counter
    usage_rollups_advance()
    _event(tenant, now, units=7, key_prefix="maas_b")  # the tail
    QuotaCounter.objects.all().delete()  # no live counter: the durable record answers
    usage = {u.period: u.used for u in quota_usage_current(scopes=[tenant_quota_scope(tenant=tenant)], now=now)}
    assert usage["monthly"] == usage_units_since_from_events(tenant_id=tenant.pk, since=month) == sum(range(10, 22)) + 7
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    assert usage["daily"] == usage_units_since_from_events(tenant_id=tenant.pk, since=day)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_real_late_commit_on_postgresql_is_counted_once(settings):
    """Two real connections: a transaction holding a lower seq commits after a higher one was rolled up."""
    if connection.vendor != "postgresql":
        pytest.skip("late commits need concurrent writers (PostgreSQL)")
    import threading

    from django.db import connections, transaction

    tenant = TenantFactory(plan=PlanFactory())
    inserted, release, done = threading.Event(), threading.Event(), threading.Event()
    held: dict[str, int] = {}

    def slow_writer():
        try:
            with transaction.atomic():
                held["seq"] = _event(tenant, DAY + timedelta(hours=3), units=11, key_prefix="maas_a").seq
                inserted.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()
            done.set()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    try:
        assert inserted.wait(timeout=30)
        later = _event(tenant, DAY + timedelta(hours=3), units=5, key_prefix="maas_b").seq
        assert later > held["seq"]
        usage_rollups_advance()
        assert UsageRollupWatermark.objects.get().last_seq >= later
        _assert_exact(tenant)  # the held event is invisible to both sides
        release.set()
        assert done.wait(timeout=30)
    finally:
        release.set()
        thread.join(timeout=30)
    # Committed now, below the watermark: the tail counts it until the next run folds it in.
    assert usage_units_since(tenant_id=tenant.pk, since=DAY) == 16
    _assert_exact(tenant)
    assert usage_rollups_advance().late_events == 1
    assert usage_rollups_advance().late_events == 0
    assert usage_units_since(tenant_id=tenant.pk, since=DAY) == 16
    _assert_exact(tenant)
    _assert_rollups_are_a_direct_count(tenant)


def _wait_for(condition, timeout: float = 120.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_killed_mid_advance_counts_nothing_twice():
    """A real worker on the real broker, SIGKILLed between batches; a rerun finishes the job exactly."""
    import os
    import signal

    from tests.support import celery_worker

    tenant = TenantFactory(plan=PlanFactory())
    events = [
        _event(tenant, DAY + timedelta(minutes=3 * i), units=i % 7, key_prefix=KEYS[i % 3], latency_ms=i / 4)
        for i in range(1500)
    ]
    last = events[-1].seq
    # One event per batch, so the run is long enough to be killed in the middle of it.
    with celery_worker(
        AUDIT_SEAL_LAG_SECONDS="0", USAGE_ROLLUP_BATCH_SIZE="1", USAGE_ROLLUP_MAX_BATCHES="100000"
    ) as proc:
        usage_rollups_advance_task.delay()
        assert _wait_for(lambda: UsageRollupWatermark.objects.filter(last_seq__gte=events[50].seq).exists())
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)
    killed_at = UsageRollupWatermark.objects.get().last_seq
    assert killed_at < last, "the worker finished before it was killed"
    _assert_exact(tenant)  # rollups up to the kill + the tail after it
    rerun = usage_rollups_advance()
    assert rerun.events == len([e for e in events if e.seq > killed_at])
    _assert_exact(tenant)
    _assert_rollups_are_a_direct_count(tenant)
    # And the async path completes on its own: a fresh worker, a fresh event.
    _event(tenant, DAY, units=9)
    with celery_worker(AUDIT_SEAL_LAG_SECONDS="0"):
        usage_rollups_advance_task.delay()
        assert _wait_for(lambda: UsageRollupWatermark.objects.get().last_seq > last)
    _assert_rollups_are_a_direct_count(tenant)
