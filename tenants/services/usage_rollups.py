"""Usage rollups: the audit trail's request counts folded, once, into per-hour and per-day rows.

Every usage figure (``GET /v1/usage``, the admin's usage page, chart and CSV,
the quota counters rebuilt after a Redis loss) used to scan the tenant's audit
events, so its cost grew with the history behind it (4.7-5.9 s for one tenant
with 2 million events).  ``usage_rollups_advance`` instead adds each event,
once, to :class:`~tenants.models.UsageRollup` rows (per tenant, UTC hour and
UTC day, key, model version, status class and error code, with the latency
sum, count and maximum), and moves the sequence watermark
(:class:`~tenants.models.UsageRollupWatermark`) past it in the *same*
transaction.  Reads (``tenants.usage_rows``) take the rollups up to the
watermark plus the few events past it, so answers stay exact up to the last
request.

The exactness rule (late commits).  ``seq`` is taken at INSERT but becomes
visible at COMMIT, so seq 100 can appear after seq 101 was committed and
already rolled up.  Two measures, together:

1. The horizon rule of the sealer (``audit.services.sealing``): a run stops
   at the newest event *recorded* (``recorded_at``, the database's clock) at
   least ``AUDIT_SEAL_LAG_SECONDS`` ago, so the transactions still in flight
   are almost never passed.
2. Unlike the sealer, nothing below the watermark is assumed final.  Every
   sequence number the advance passes without seeing its event is kept in the
   watermark's ``gaps`` (as ``[first, last, seen_at]`` ranges).  Each run first
   rolls up the events that have since appeared in a gap and removes them from
   it, and usage reads add the events of the gaps to the tail, so a late commit
   is counted exactly once: in the tail until a run folds it in, in the
   rollups after.  A gap is forgotten ``USAGE_ROLLUP_GAP_TTL_SECONDS`` (default
   an hour) after it was seen: on PostgreSQL, sequence numbers of rolled-back
   INSERTs never appear.  An audit INSERT whose transaction stays open longer
   than that is the one case not counted (the sealer already gives up on it
   after two seconds and signs its seq as a gap).

Idempotent and restartable: each batch is one transaction that locks the
watermark row, reads its events in one statement (one snapshot, so the gaps it
records are exactly the seqs it did not count), adds them to the rollups and
moves the watermark with a compare-and-set on ``version``.  A crash anywhere
rolls the whole batch back; a rerun starts from the committed watermark, so
nothing is counted twice and nothing is skipped.  Concurrent runs serialise on
the row lock (PostgreSQL) or fail the compare-and-set (SQLite) and stop.

Retention: the audit purge removes old events, never rollup rows, so usage
history (and a monthly quota rebuild) is unchanged by a purge.  Rollups trail
the trail by seconds; the purge removes events older than the retention floor
(180 days), which were rolled up long before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from audit.models import AuditEvent
from audit.services.sealing import seal_lag_seconds
from tenants.models import UsageRollup, UsageRollupWatermark

logger = logging.getLogger("tenants.usage")

REQUEST = AuditEvent.Type.REQUEST
# Fetched per event: the dimensions and measures of a rollup row.
EVENT_FIELDS = (
    "seq",
    "tenant_id",
    "event_type",
    "key_prefix",
    "model_name",
    "model_version",
    "http_status",
    "error_code",
    "units",
    "latency_ms",
    "occurred_at",
)
DIMENSIONS = (
    "tenant_id",
    "granularity",
    "bucket_start",
    "request",
    "key_prefix",
    "model_name",
    "model_version",
    "status_class",
    "error_code",
)
MEASURES = ("requests", "units", "latency_sum", "latency_count", "latency_max")
# Gap ranges per query: keeps every OR chain far below SQLite's expression depth limit.
GAP_CHUNK = 100


class RollupRaced(Exception):
    """Another advance moved the watermark first (SQLite); this run stops, that one carries on."""


@dataclass
class RollupAdvance:
    """What one run of ``usage_rollups_advance`` did."""

    batches: int = 0
    events: int = 0
    late_events: int = 0
    last_seq: int = 0
    gaps: int = 0
    expired_gaps: int = 0


def rollup_batch_size() -> int:
    """Events per batch (one transaction each)."""
    return int(getattr(settings, "USAGE_ROLLUP_BATCH_SIZE", 5000))


def rollup_max_batches() -> int:
    """Batches one beat run may commit (the rest waits for the next run)."""
    return int(getattr(settings, "USAGE_ROLLUP_MAX_BATCHES", 200))


def rollup_gap_ttl_seconds() -> float:
    """How long a passed, still invisible sequence number is watched for a late commit."""
    return float(getattr(settings, "USAGE_ROLLUP_GAP_TTL_SECONDS", 3600.0))


def status_class(http_status: int | None) -> int:
    """``http_status // 100`` (0 for none): 4 is a refusal, 5 and up an error."""
    return 0 if not http_status else int(http_status) // 100


def _db_now() -> datetime:
    """The database's clock (``recorded_at`` is set by it)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement_timestamp()")
            return cursor.fetchone()[0]
    return timezone.now()


def _horizon(start: int) -> int | None:
    """Newest sequence number recorded at least the sealer's lag ago (``None``: nothing new)."""
    cutoff = _db_now() - timedelta(seconds=seal_lag_seconds())
    return AuditEvent.objects.filter(seq__gt=start, recorded_at__lte=cutoff).aggregate(top=Max("seq"))["top"]


def watermark_snapshot() -> tuple[int, int, list[list]]:
    """``(version, last_seq, gaps)`` as committed now (no lock: readers never block the advance)."""
    row = UsageRollupWatermark.objects.filter(pk=1).values_list("version", "last_seq", "gaps").first()
    if row is None:
        return 0, 0, []
    return int(row[0]), int(row[1]), [list(g) for g in row[2] or []]


def watermark_version() -> int:
    """The committed watermark's version (0 before the first batch)."""
    return int(UsageRollupWatermark.objects.filter(pk=1).values_list("version", flat=True).first() or 0)


def gap_query(gaps: Sequence[Sequence[int]]) -> list[Q]:
    """One ``Q`` per chunk of gap ranges (the events that may have appeared in them)."""
    out: list[Q] = []
    for i in range(0, len(gaps), GAP_CHUNK):
        q = Q()
        for first, last, *_ in gaps[i : i + GAP_CHUNK]:
            q |= Q(seq__gte=first, seq__lte=last)
        out.append(q)
    return out


def _watermark_locked() -> UsageRollupWatermark:
    """Lock the watermark row (created at version 0 if missing); must run inside a transaction."""
    row = UsageRollupWatermark.objects.select_for_update().filter(pk=1).first()
    if row is not None:
        return row
    with transaction.atomic():
        UsageRollupWatermark.objects.get_or_create(pk=1)
    return UsageRollupWatermark.objects.select_for_update().get(pk=1)


def _watermark_commit(row: UsageRollupWatermark, *, last_seq: int, gaps: list[list]) -> None:
    """Move the watermark in the batch's transaction; a lost compare-and-set rolls the batch back."""
    moved = UsageRollupWatermark.objects.filter(pk=1, version=row.version).update(
        last_seq=last_seq, gaps=gaps, version=row.version + 1, updated_at=timezone.now()
    )
    if moved != 1:
        raise RollupRaced("the usage watermark moved during this batch")


def rollup_groups(rows: Iterable[Sequence]) -> dict[tuple, list]:
    """Fold event rows (``EVENT_FIELDS`` order) into hour and day groups: dimensions -> measures.

    Events without a tenant are not usage; events other than requests count
    only for their ``units`` and are skipped when they carry none.
    """
    groups: dict[tuple, list] = {}
    for (
        _seq,
        tenant_id,
        event_type,
        key_prefix,
        model_name,
        model_version,
        http_status,
        code,
        units,
        latency,
        at,
    ) in rows:
        if tenant_id is None:
            continue
        request = event_type == REQUEST
        if not request and not units:
            continue
        hour = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        rest = (
            request,
            key_prefix or "",
            model_name or "",
            -1 if model_version is None else int(model_version),
            status_class(http_status),
            code or "",
        )
        timed = latency is not None and request
        for granularity, start in (
            (UsageRollup.Granularity.HOUR, hour),
            (UsageRollup.Granularity.DAY, hour.replace(hour=0)),
        ):
            key = (int(tenant_id), str(granularity), start, *rest)
            measures = groups.get(key)
            if measures is None:
                measures = groups[key] = [0, 0, 0.0, 0, None]
            measures[0] += 1 if request else 0
            measures[1] += int(units or 0)
            if timed:
                measures[2] += float(latency)
                measures[3] += 1
                measures[4] = latency if measures[4] is None or latency > measures[4] else measures[4]
    return groups


def _upsert(groups: dict[tuple, list]) -> None:
    """Add the groups to the rollup rows: one ``INSERT ... ON CONFLICT DO UPDATE`` (PostgreSQL and SQLite)."""
    if not groups:
        return
    qn = connection.ops.quote_name
    table = qn(UsageRollup._meta.db_table)
    columns = DIMENSIONS + MEASURES
    fields = [UsageRollup._meta.get_field(name) for name in columns]
    latency_max = qn("latency_max")
    sql = (
        f"INSERT INTO {table} ({', '.join(qn(c) for c in columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({', '.join(qn(c) for c in DIMENSIONS)}) DO UPDATE SET "
        + ", ".join(f"{qn(m)} = {table}.{qn(m)} + excluded.{qn(m)}" for m in MEASURES[:4])
        + f", {latency_max} = CASE WHEN {table}.{latency_max} IS NULL OR excluded.{latency_max} > {table}.{latency_max}"
        f" THEN excluded.{latency_max} ELSE {table}.{latency_max} END"
    )
    params = [
        [field.get_db_prep_save(value, connection) for field, value in zip(fields, (*key, *measures), strict=True)]
        for key, measures in groups.items()
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _ranges(missing: Iterable[int], seen_at: float) -> list[list]:
    out: list[list] = []
    for seq in missing:
        if out and out[-1][1] == seq - 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq, seen_at])
    return out


def _missing(first: int, last: int, seen: Sequence[int]) -> list[list]:
    """Ranges of ``first..last`` not in ``seen`` (sorted), as ``[first, last]`` pairs."""
    out: list[list] = []
    cursor = first
    for seq in seen:
        if seq > cursor:
            out.append([cursor, seq - 1])
        cursor = max(cursor, seq + 1)
    if cursor <= last:
        out.append([cursor, last])
    return out


def _gaps_recheck(result: RollupAdvance) -> None:
    """Roll up the events that appeared in gaps since they were passed; forget expired gaps."""
    if not watermark_snapshot()[2]:
        return
    with transaction.atomic():
        row = _watermark_locked()
        gaps = [list(g) for g in row.gaps or []]
        found: list[Sequence] = []
        for q in gap_query(gaps):
            found += list(AuditEvent.objects.filter(q).order_by("seq").values_list(*EVENT_FIELDS))
        now = time.time()
        ttl = rollup_gap_ttl_seconds()
        seen = sorted(r[0] for r in found)
        kept: list[list] = []
        for first, last, seen_at in gaps:
            inside = [s for s in seen if first <= s <= last]
            pieces = _missing(first, last, inside)
            if seen_at < now - ttl:
                result.expired_gaps += sum(b - a + 1 for a, b in pieces)
                continue
            kept += [[a, b, seen_at] for a, b in pieces]
        if not found and kept == gaps:
            return
        _upsert(rollup_groups(found))
        _watermark_commit(row, last_seq=row.last_seq, gaps=kept)
    result.late_events += len(found)
    if found:
        logger.info("late audit events rolled up", extra={"events": len(found)})


def _advance_batch(*, horizon: int, batch_size: int, result: RollupAdvance) -> bool:
    """Roll up one batch of events past the watermark, up to ``horizon``; False when there is none."""
    with transaction.atomic():
        row = _watermark_locked()
        start = row.last_seq
        if start >= horizon:
            return False
        # The batch ends at its batch_size-th visible event (an index range on
        # the primary key), so a long run of missing seqs costs one batch.
        nth = (
            AuditEvent.objects.filter(seq__gt=start, seq__lte=horizon)
            .order_by("seq")
            .values_list("seq", flat=True)[batch_size - 1 : batch_size]
        )
        upper = next(iter(nth), None) or horizon
        # One statement, one snapshot: the gaps recorded below are exactly the
        # seqs whose events this batch did not count.
        rows = list(AuditEvent.objects.filter(seq__gt=start, seq__lte=upper).order_by("seq").values_list(*EVENT_FIELDS))
        new_gaps = [[a, b, time.time()] for a, b in _missing(start + 1, upper, [r[0] for r in rows])]
        _upsert(rollup_groups(rows))
        _watermark_commit(row, last_seq=upper, gaps=[list(g) for g in row.gaps or []] + new_gaps)
    result.batches += 1
    result.events += len(rows)
    result.last_seq = upper
    result.gaps += sum(b - a + 1 for a, b, _ in new_gaps)
    return True


def usage_rollups_advance(*, batch_size: int | None = None, max_batches: int | None = None) -> RollupAdvance:
    """Fold every audit event up to the horizon into the usage rollups, one transaction per batch.

    Safe to run at any time, concurrently and after a crash (see the module
    docstring); returns what it did.  ``max_batches`` bounds one run (the beat
    task leaves the rest to the next run); ``None`` runs to completion, which
    is what a benchmark or a backfill calls.
    """
    size = batch_size or rollup_batch_size()
    if size < 1:
        raise ValueError(f"batch_size must be positive, got {size!r}")
    result = RollupAdvance()
    try:
        _gaps_recheck(result)
        result.last_seq = watermark_snapshot()[1]
        horizon = _horizon(result.last_seq)
        if horizon is None:
            return result
        while max_batches is None or result.batches < max_batches:
            if not _advance_batch(horizon=horizon, batch_size=size, result=result):
                break
    except RollupRaced:
        logger.info("usage rollup run stopped: another run advanced the watermark")
    return result
