"""Monthly partitions of the event table on PostgreSQL: creating them ahead and describing them.

Migration 0010 partitions ``audit_auditevent`` by RANGE on ``recorded_at``,
one partition per calendar month (UTC), plus the ``plegacy`` partition that
holds every row the table had before and a DEFAULT partition that catches a
row whose month has no partition yet, so an INSERT never fails.  A row in the
default partition is never lost, but its month can then no longer get its
own partition (PostgreSQL refuses a partition whose rows already sit in the
default), so the months are created well ahead: at migrate time, and daily
by the ``audit.partitions_ensure`` beat task for the next
``AUDIT_PARTITION_MONTHS_AHEAD`` months.

Creation goes through ``audit_partitions_ensure`` (``SECURITY DEFINER``,
owned by the owner role): the application role owns no table and could not
create a partition itself.  Partitions are removed only by the retention
purge (:mod:`audit.services.retention`), inside ``audit_purge_blocks``.

SQLite keeps one table: every function here is a no-op there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent

#: What the beat task asks for when the setting is absent: this month and the next three.
DEFAULT_MONTHS_AHEAD = 3
_BOUND = re.compile(r"FROM \((?P<low>[^)]*)\) TO \((?P<high>[^)]*)\)")


@dataclass(frozen=True)
class AuditPartition:
    """One partition of the event table: its name, ``recorded_at`` bounds and size on disk."""

    name: str
    low: datetime | None  # None: MINVALUE (the legacy partition) or the default partition
    high: datetime | None  # None: the default partition
    is_default: bool
    total_bytes: int
    rows_estimate: int


def audit_events_partitioned() -> bool:
    """True when the event table is a partitioned table (PostgreSQL after migration 0010)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(%s)", [AuditEvent._meta.db_table]
        )
        return cursor.fetchone() is not None


def audit_partition_months_ahead() -> int:
    """How many months from the current one the beat task keeps created."""
    return int(getattr(settings, "AUDIT_PARTITION_MONTHS_AHEAD", DEFAULT_MONTHS_AHEAD))


def audit_partitions_ensure(*, months_ahead: int | None = None, first_month: date | None = None) -> list[str]:
    """Create the monthly partitions from ``first_month`` (default: this month) for ``months_ahead`` + 1 months.

    Idempotent: existing months, and months the legacy partition covers, are
    skipped; returns the names created.  A month whose rows already sit in
    the default partition is skipped with a database WARNING (its rows stay
    there and are purged by row deletes).  ``first_month`` lets a benchmark
    or a backfill create past months before loading rows into them.
    """
    if not audit_events_partitioned():
        return []
    months = (audit_partition_months_ahead() if months_ahead is None else months_ahead) + 1
    start = first_month or timezone.now().astimezone(UTC).date()
    with connection.cursor() as cursor:
        cursor.execute("SELECT audit_partitions_ensure(%s::date, %s)", [start.replace(day=1), months])
        return [row[0] for row in cursor.fetchall()]


def _bound(text: str) -> datetime | None:
    text = text.strip()
    if text.upper() in ("MINVALUE", "MAXVALUE"):
        return None
    return datetime.fromisoformat(text.strip("'")).astimezone(UTC)


def audit_partitions_describe() -> list[AuditPartition]:
    """Every partition of the event table with its bounds and ``pg_total_relation_size``, oldest first."""
    if not audit_events_partitioned():
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), pg_total_relation_size(c.oid), "
            "greatest(c.reltuples, 0)::bigint FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s)",
            [AuditEvent._meta.db_table],
        )
        rows = cursor.fetchall()
    partitions = []
    for name, bound, size, estimate in rows:
        match = _BOUND.search(bound)
        low, high = (_bound(match["low"]), _bound(match["high"])) if match else (None, None)
        partitions.append(AuditPartition(name, low, high, match is None, int(size), int(estimate)))
    # The legacy partition (no lower bound) first, then by month, the default last.
    return sorted(partitions, key=lambda p: (p.is_default, p.low or datetime.min.replace(tzinfo=UTC)))


def audit_events_total_bytes() -> int:
    """``pg_total_relation_size`` summed over the event table's partitions (0 on SQLite)."""
    return sum(p.total_bytes for p in audit_partitions_describe())
