"""Monthly partitions of the event table (PostgreSQL) and retention by dropping whole months.

The trail spans three old months and the current one; one month holds a
tenant under legal hold.  The purge drops the other two months' partitions
whole, deletes rows only where a run of blocks reaches into a kept month, and
the trail still verifies with its tombstones.  On SQLite (one table) the same
purge removes the same events row by row.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from audit.models import AuditEvent, PurgeTombstone, SealedBlock
from audit.schedule import audit_beat_schedule
from audit.services import (
    audit_events_partitioned,
    audit_events_total_bytes,
    audit_month_purge,
    audit_partitions_describe,
    audit_partitions_ensure,
    audit_purge,
    audit_seal,
    audit_verify,
    legal_hold_place,
)
from audit.tasks import audit_partitions_ensure_task
from gateway.db_roles import db_roles_grant

from .conftest import BLOCK_SIZE
from .factories import AuditEventFactory

pytestmark = [pytest.mark.django_db]
on_postgres = pytest.mark.skipif(not settings.DATABASE_IS_POSTGRES, reason="partitions exist only on PostgreSQL")


def _month(day: date, add: int) -> date:
    index = day.year * 12 + day.month - 1 + add
    return date(index // 12, index % 12 + 1, 1)


def _partition_name(month: date) -> str:
    return f"audit_auditevent_p{month:%Y%m}"


def _partition_names() -> set[str]:
    return {p.name for p in audit_partitions_describe()}


def _old_months() -> list[date]:
    """Three consecutive months that all ended more than the default retention (365 days) ago."""
    first = _month((timezone.now() - timedelta(days=500)).date(), 0)
    return [_month(first, i) for i in range(3)]


def _record_month(month: date, count: int, held_at: int | None = None) -> list[AuditEvent]:
    """``count`` events recorded (and occurred) hour by hour from the month's start, in seq order."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    rows = []
    for i in range(count):
        when = start + timedelta(hours=i)
        tenant = "globex" if i == held_at else "acme"
        rows.append(AuditEventFactory(recorded_at=when, occurred_at=when, tenant_slug=tenant))
    return rows


@pytest.fixture
def months():
    """13 + 13 + 14 old events in three months (globex, held later, in the middle block of the second), 5 recent.

    With blocks of five: blocks 1-3 hold month 0 and the first two events of
    month 1; blocks 4-5 are month 1 only (globex in block 4); block 6 holds the
    last event of month 1 and the first four of month 2; blocks 7-8 are month
    2; block 9 is recent.
    """
    old = _old_months()
    audit_partitions_ensure(first_month=old[0], months_ahead=2)
    rows = [_record_month(old[0], 13), _record_month(old[1], 13, held_at=4), _record_month(old[2], 14)]
    recent = [AuditEventFactory() for _ in range(BLOCK_SIZE)]
    audit_seal()
    assert SealedBlock.objects.count() >= 9
    return old, rows, recent


@pytest.mark.embedded
def test_a_month_is_purged_by_partition_and_the_trail_still_verifies(months):
    old, (first, second, third), recent = months
    legal_hold_place(tenant_slug="globex", reason="litigation", actor="staff:legal")
    size_before = audit_events_total_bytes()

    result = audit_purge(actor="system:test")

    # The same events leave on both backends: every old block except the held one (block 4).
    assert result.blocks == 7 and result.events == 35 and result.held_blocks >= 1
    kept = set(AuditEvent.objects.values_list("seq", flat=True))
    assert kept >= {e.seq for e in second[2:7]} | {e.seq for e in recent}
    assert not kept & ({e.seq for e in first} | {e.seq for e in third} | {e.seq for e in second[7:]})
    assert list(SealedBlock.objects.filter(number__lte=8).values_list("number", flat=True)) == [4]
    assert sum(PurgeTombstone.objects.values_list("event_count", flat=True)) == 35
    report = audit_verify()
    assert report.ok, report.problems
    assert report.purged_events == 35
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    assert "Purged by retention: 7 blocks, 35 events" in out.getvalue() and "OK" in out.getvalue()

    if connection.vendor == "postgresql":
        names = _partition_names()
        # Months 0 and 2 went whole; month 1 (the hold) stays with its held block's events.
        assert _partition_name(old[0]) not in names and _partition_name(old[2]) not in names
        assert _partition_name(old[1]) in names
        tombs = list(PurgeTombstone.objects.order_by("first_block").values_list("first_block", "last_block"))
        assert tombs == [(1, 3), (5, 5), (6, 8)]
        assert audit_events_total_bytes() < size_before


@on_postgres
def test_a_held_month_is_not_dropped_and_its_rows_stay(months):
    old, (first, second, third), _ = months
    legal_hold_place(tenant_slug="acme", reason="everything", actor="staff:legal")
    assert audit_purge().blocks == 0
    assert {_partition_name(m) for m in old} <= _partition_names()
    assert AuditEvent.objects.filter(seq__in=[e.seq for e in first + second + third]).count() == 40


@on_postgres
def test_one_month_is_purged_on_its_own(months):
    old, (first, second, _), _ = months
    legal_hold_place(tenant_slug="globex", reason="litigation", actor="staff:legal")
    assert audit_month_purge(month=old[1]).blocks == 0  # the held month cannot go whole: nothing removed
    result = audit_month_purge(month=old[0], actor="system:test")
    assert (result.blocks, result.events, len(result.tombstones)) == (3, 15, 1)
    names = _partition_names()
    assert _partition_name(old[0]) not in names and {_partition_name(m) for m in old[1:]} <= names
    # The run reached two rows into the next month: those were deleted row by row, the rest stays.
    assert not AuditEvent.objects.filter(seq__in=[e.seq for e in first + second[:2]]).exists()
    assert AuditEvent.objects.filter(seq__in=[e.seq for e in second[2:]]).count() == 11
    assert audit_verify().ok


@on_postgres
def test_partitions_cover_this_month_ahead_and_a_default():
    assert audit_events_partitioned()
    this_month = _month(timezone.now().date(), 0)
    names = _partition_names()
    assert {_partition_name(_month(this_month, i)) for i in range(4)} <= names
    assert "audit_auditevent_pdefault" in names
    # Idempotent: asking again creates nothing; further ahead creates exactly the new months.
    assert audit_partitions_ensure() == []
    assert audit_partitions_ensure(months_ahead=5) == [_partition_name(_month(this_month, i)) for i in (4, 5)]


@on_postgres
def test_a_row_outside_every_month_lands_in_the_default_partition():
    event = AuditEventFactory(recorded_at=datetime(2099, 5, 1, tzinfo=UTC))
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM audit_auditevent WHERE seq = %s", [event.seq])
        assert cursor.fetchone()[0] == "audit_auditevent_pdefault"
    assert AuditEvent.objects.get(pk=event.seq).recorded_at.year == 2099


@on_postgres
def test_seq_is_unique_across_partitions_and_event_id_within_a_month():
    old = _old_months()
    audit_partitions_ensure(first_month=old[0], months_ahead=0)
    past = datetime(old[0].year, old[0].month, 2, tzinfo=UTC)
    event = AuditEventFactory()  # this month
    clash_seq = AuditEvent(seq=event.seq, recorded_at=past, occurred_at=past, event_type="request")
    with pytest.raises(IntegrityError, match="seq"), transaction.atomic():
        clash_seq.save()  # the session's own last row, in another month
    other = AuditEventFactory()
    with pytest.raises(IntegrityError, match="seq"), transaction.atomic():
        AuditEvent(seq=event.seq, recorded_at=past, occurred_at=past, event_type="request").save()  # an older one
    clash_id = AuditEvent(event_id=event.event_id, occurred_at=past, event_type="request")  # this month again
    with pytest.raises(IntegrityError, match="event_id"), transaction.atomic():
        clash_id.save()
    assert AuditEvent.objects.filter(event_id=event.event_id).count() == 1
    assert AuditEvent.objects.filter(seq__in=[event.seq, other.seq]).count() == 2


@on_postgres
def test_a_partition_cannot_be_emptied_directly_even_by_the_owner(months):
    old, _, _ = months
    name = _partition_name(old[0])
    for statement in (f"DELETE FROM {name}", f"TRUNCATE {name}", f"UPDATE {name} SET http_status = 500"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as c:
            c.execute(statement)
    assert AuditEvent.objects.filter(recorded_at__lt=datetime(old[1].year, old[1].month, 1, tzinfo=UTC)).count() == 13


@on_postgres
def test_the_application_role_has_no_privilege_on_partitions_but_creates_them_through_the_function(months):
    old, _, _ = months
    role = f"{connection.settings_dict['NAME']}_app"[:63]
    db_roles_grant(app_role=role)
    name = _partition_name(old[0])
    for statement in (f"SELECT count(*) FROM {name}", f"DROP TABLE {name}", f"ALTER TABLE {name} RENAME TO x"):
        with (
            pytest.raises(DatabaseError, match=r"permission denied|must be owner"),
            transaction.atomic(),
            connection.cursor() as c,
        ):
            c.execute(f'SET LOCAL ROLE "{role}"')
            c.execute(statement)
    with transaction.atomic(), connection.cursor() as c:
        c.execute(f'SET LOCAL ROLE "{role}"')
        created = audit_partitions_ensure(first_month=_month(timezone.now().date(), 12), months_ahead=0)
        c.execute("RESET ROLE")
    assert created == [_partition_name(_month(timezone.now().date(), 12))]


@pytest.mark.embedded
def test_the_beat_task_ensures_partitions_and_is_scheduled_by_name():
    entry = audit_beat_schedule()["audit-partitions-ensure"]
    assert entry["task"] == audit_partitions_ensure_task.name == "audit.partitions_ensure"
    result = audit_partitions_ensure_task.apply().get()
    assert result == {"created": []}  # migrate created this month and the next three; SQLite has none
    if connection.vendor == "sqlite":
        assert not audit_events_partitioned() and audit_partitions_describe() == []


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_a_busy_table_fails_the_partition_purge_cleanly_and_loses_nothing(months):
    """A reader holding the table (a long export) is not queued behind: the purge gives up, nothing is removed."""
    import psycopg

    old, (first, _, _), _ = months
    settings_dict = connection.settings_dict
    reader = psycopg.connect(
        dbname=settings_dict["NAME"],
        user=settings_dict["USER"],
        host=settings_dict["HOST"],
        port=settings_dict["PORT"] or 5432,
        password=settings_dict["PASSWORD"] or None,
    )
    try:
        reader.execute("SELECT count(*) FROM audit_auditevent")  # ACCESS SHARE until its transaction ends
        with pytest.raises(DatabaseError, match="stayed busy"):
            audit_month_purge(month=old[0])
        assert _partition_name(old[0]) in _partition_names()
        assert AuditEvent.objects.filter(seq__in=[e.seq for e in first]).count() == 13
        assert not PurgeTombstone.objects.exists() and SealedBlock.objects.filter(number=1).exists()
    finally:
        reader.close()
    assert audit_month_purge(month=old[0]).blocks == 3  # free again: it goes
    assert audit_verify().ok
