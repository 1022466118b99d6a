"""Retention periods, legal holds and the purge that enforces them.

The law sets a floor (logs kept at least six months: EU AI Act Art. 19 and
26(6), China's Cybersecurity Law Art. 21), data minimisation sets a ceiling
(PIPL), and litigation can freeze everything (legal hold).  The purge removes
only *whole sealed blocks*, so what remains still verifies: a block goes when
every event in it is past its own tenant's retention and no tenant in it is
on hold.  Each removed run of blocks leaves a signed ``PurgeTombstone``
(range, counts, Merkle root over the removed block hashes, and the chain
link), and the purge itself is an audit event.

On PostgreSQL the deletion itself is ``audit_purge_blocks`` (migrations
0006 and 0010): a ``SECURITY DEFINER`` function owned by the owner role, which
checks the retention floor and legal holds again before it deletes, so the
application role needs (and has) no DELETE privilege on the audit tables.  On
SQLite the append-only triggers let DELETE through only inside this module's
``purge_window``.

Retention by partition (PostgreSQL, migration 0010): the event table has one
partition per month of ``recorded_at``.  Before the block-by-block pass, each
month whose end is older than the floor is tried whole: the run of blocks
covering all of its rows (from the block holding its first row to the block
holding its last, which may reach a little into the neighbouring months) is
purged as one run when every one of those blocks is purgeable by the same
rules.  ``audit_purge_blocks`` then DETACHes and DROPs every partition lying
wholly inside the run (no dead rows, no VACUUM, the space returns to the
operating system at once) and deletes row by row only the run's rows in
other partitions.  A month with a held, unexpired or unsealed block is left
to the block-by-block pass, which deletes rows as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import pairwise

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max, Min
from django.utils import timezone

from audit.blocks import header_bytes, header_hash
from audit.db import purge_window
from audit.errors import LegalHoldAlreadyReleased, LegalHoldNotFound, RetentionBelowFloor
from audit.merkle import leaf_hash, merkle_root
from audit.models import AuditEvent, LegalHold, PurgeTombstone, SealedBlock, TenantRetention
from audit.selectors import legal_holds_active, retention_days_by_tenant, retention_default_days
from audit.services.partitions import AuditPartition, audit_events_partitioned, audit_partitions_describe
from audit.services.recording import audit_change_record
from audit.services.sealing import seal_state_locked
from audit.signing import signing_identity

logger = logging.getLogger("policy.audit")

_MAX_BLOCKS_PER_RUN = 20


def retention_set(
    *, tenant_slug: str, retention_days: int, actor: str, tenant_id: int | None = None
) -> TenantRetention:
    """Set a tenant's retention period (audited); below the floor raises ``RetentionBelowFloor``."""
    floor = settings.AUDIT_RETENTION_FLOOR_DAYS
    if retention_days < floor:
        raise RetentionBelowFloor(
            f"Audit events must be kept at least {floor} days; {retention_days} was requested.",
            floor_days=floor,
        )
    with transaction.atomic():
        current = TenantRetention.objects.select_for_update().filter(tenant_slug=tenant_slug).first()
        before = {"retention_days": current.retention_days} if current else None
        if current is None:
            current = TenantRetention(tenant_slug=tenant_slug)
        current.retention_days = retention_days
        current.updated_by = actor
        current.save()
        audit_change_record(
            actor=actor,
            action="retention.set",
            target=f"retention:{tenant_slug}",
            before=before,
            after={"retention_days": retention_days},
            tenant_id=tenant_id,
            tenant_slug=tenant_slug,
        )
    return current


def legal_hold_place(*, tenant_slug: str, reason: str, actor: str) -> LegalHold:
    """Stop the purge for ``tenant_slug`` (``*`` for every tenant) until released; audited."""
    with transaction.atomic():
        # The purge holds the same lock while it decides, so a hold placed
        # now cannot miss a purge that has already started deciding.
        seal_state_locked()
        hold = LegalHold.objects.create(tenant_slug=tenant_slug, reason=reason, placed_by=actor)
        audit_change_record(
            actor=actor,
            action="legal_hold.place",
            target=f"legal_hold:{hold.pk}",
            after={"tenant_slug": tenant_slug, "reason": reason},
            tenant_slug="" if tenant_slug == LegalHold.ALL_TENANTS else tenant_slug,
            event_type=AuditEvent.Type.LEGAL_HOLD,
        )
    return hold


def legal_hold_release(*, hold_id: int, actor: str, reason: str) -> LegalHold:
    """Release a hold (audited); the next purge may then remove what it protected."""
    with transaction.atomic():
        hold = LegalHold.objects.select_for_update().filter(pk=hold_id).first()
        if hold is None:
            raise LegalHoldNotFound(f"No legal hold {hold_id}.")
        if hold.released_at is not None:
            raise LegalHoldAlreadyReleased(f"Legal hold {hold_id} was released at {hold.released_at.isoformat()}.")
        hold.released_at = timezone.now()
        hold.released_by = actor
        hold.released_reason = reason
        hold.save(update_fields=["released_at", "released_by", "released_reason"])
        audit_change_record(
            actor=actor,
            action="legal_hold.release",
            target=f"legal_hold:{hold.pk}",
            before={"tenant_slug": hold.tenant_slug, "reason": hold.reason},
            after={"released_reason": reason},
            tenant_slug="" if hold.tenant_slug == LegalHold.ALL_TENANTS else hold.tenant_slug,
            event_type=AuditEvent.Type.LEGAL_HOLD,
        )
    return hold


@dataclass
class PurgeResult:
    """What a purge removed (and what it kept because of holds)."""

    tombstones: list[int] = field(default_factory=list)
    blocks: int = 0
    events: int = 0
    held_blocks: int = 0


def _block_is_purgeable(
    block: SealedBlock, now: datetime, retention: dict[str, int], default_days: int, holds: set[str]
) -> tuple[bool, bool]:
    """(purgeable, kept only by a legal hold) for one block, from a per-tenant aggregate."""
    floor = settings.AUDIT_RETENTION_FLOOR_DAYS
    if not holds:
        # No hold anywhere and the block's newest event is past the longest
        # retention any tenant has: purgeable without reading its events
        # (a month is tens of thousands of blocks).
        longest = max(floor, default_days, *retention.values())
        if block.last_occurred_at < now - timedelta(days=longest):
            return True, False
    per_tenant = (
        AuditEvent.objects.filter(seq__gte=block.first_seq, seq__lte=block.last_seq)
        .order_by()
        .values("tenant_slug")
        .annotate(newest=Max("occurred_at"))
    )
    expired, held = True, False
    for row in per_tenant:
        days = max(floor, retention.get(row["tenant_slug"], default_days))
        if row["newest"] >= now - timedelta(days=days):
            expired = False
        if LegalHold.ALL_TENANTS in holds or row["tenant_slug"] in holds:
            held = True
    return expired and not held, expired and held


def _next_run(after: int, now: datetime, result: PurgeResult) -> tuple[list[SealedBlock], int]:
    """The next contiguous run of purgeable blocks after block ``after`` (and where scanning stopped)."""
    floor = settings.AUDIT_RETENTION_FLOOR_DAYS
    retention, default_days, holds = retention_days_by_tenant(), retention_default_days(), legal_holds_active()
    candidates = (
        SealedBlock.objects.filter(number__gt=after, last_occurred_at__lt=now - timedelta(days=floor))
        .order_by("number")
        .defer("leaf_hashes", "event_ids")
    )
    run: list[SealedBlock] = []
    last_seen = after
    for block in candidates.iterator(chunk_size=100):
        if run and block.number != run[-1].number + 1:
            last_seen = block.number - 1  # not adjacent: it may start the next run
            break
        last_seen = block.number
        purgeable, held = _block_is_purgeable(block, now, retention, default_days, holds)
        if held:
            result.held_blocks += 1
        if purgeable:
            run.append(block)
            if len(run) >= _MAX_BLOCKS_PER_RUN:
                break
        elif run:
            break
    return run, last_seen


def _partition_run(partition: AuditPartition, now: datetime) -> list[SealedBlock]:
    """The blocks covering every row of ``partition`` when all of them are purgeable, else ``[]``."""
    rows = AuditEvent.objects.filter(recorded_at__lt=partition.high)
    if partition.low is not None:
        rows = rows.filter(recorded_at__gte=partition.low)  # both bounds: PostgreSQL prunes to the one partition
    span = rows.aggregate(low=Min("seq"), high=Max("seq"))
    if span["low"] is None:
        return []
    blocks = list(
        SealedBlock.objects.filter(last_seq__gte=span["low"], first_seq__lte=span["high"])
        .order_by("number")
        .defer("leaf_hashes", "event_ids")
    )
    if not blocks or blocks[0].first_seq > span["low"] or blocks[-1].last_seq < span["high"]:
        return []  # rows not sealed yet
    if any(b.number != a.number + 1 for a, b in pairwise(blocks)):
        return []  # an earlier purge removed blocks inside the month: the block pass finishes it
    retention, default_days, holds = retention_days_by_tenant(), retention_default_days(), legal_holds_active()
    for block in blocks:
        purgeable, _ = _block_is_purgeable(block, now, retention, default_days, holds)
        if not purgeable:
            return []
    return blocks


def _partition_candidates(now: datetime) -> list[AuditPartition]:
    """Monthly partitions (and the legacy one) whose every row was recorded before the retention floor."""
    if not audit_events_partitioned():
        return []
    cutoff = now - timedelta(days=settings.AUDIT_RETENTION_FLOOR_DAYS)
    return [p for p in audit_partitions_describe() if not p.is_default and p.high is not None and p.high <= cutoff]


def _delete_range(table: str, column: str, first: int, last: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {connection.ops.quote_name(table)} "  # table/column names come from model meta
            f"WHERE {connection.ops.quote_name(column)} BETWEEN %s AND %s",
            [first, last],
        )
        return cursor.rowcount


def _purge_run(run: list[SealedBlock], *, now: datetime, actor: str, reason: str) -> PurgeTombstone:
    first, last = run[0], run[-1]
    tenants = {
        row["tenant_slug"]: row["n"]
        for row in AuditEvent.objects.filter(seq__gte=first.first_seq, seq__lte=last.last_seq)
        .order_by()
        .values("tenant_slug")
        .annotate(n=Count("seq"))
    }
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT audit_purge_blocks(%s, %s)", [first.number, last.number])
            removed_events = int(cursor.fetchone()[0])
    else:
        with purge_window():
            removed_events = _delete_range(AuditEvent._meta.db_table, "seq", first.first_seq, last.last_seq)
            _delete_range(SealedBlock._meta.db_table, "number", first.number, last.number)
    identity = signing_identity()
    # The unsaved row builds its own header, so what is signed here is by
    # construction what verifiers rebuild from the stored row.
    tomb = PurgeTombstone(
        first_block=first.number,
        last_block=last.number,
        first_seq=first.first_seq,
        last_seq=last.last_seq,
        block_count=len(run),
        event_count=removed_events,
        removed_root=merkle_root([leaf_hash(bytes.fromhex(b.block_hash)) for b in run]).hex(),
        prev_block_hash=first.prev_block_hash,
        last_block_hash=last.block_hash,
        tenants={slug or "(none)": n for slug, n in sorted(tenants.items())},
        reason=reason,
        actor=actor,
        purged_at=now,
        key_id=identity.key_id,
    )
    header = tomb.header()
    tomb.signature = identity.sign(header_bytes(header))
    tomb.tombstone_hash = header_hash(header)
    tomb.save()
    audit_change_record(
        actor=actor,
        action="audit.purge",
        target=f"blocks:{first.number}-{last.number}",
        before={"first_seq": first.first_seq, "last_seq": last.last_seq, "events": removed_events},
        after={"tombstone": tomb.pk, "tombstone_hash": tomb.tombstone_hash},
        event_type=AuditEvent.Type.PURGE,
        extra={"reason": reason, "tenants": tomb.tenants},
    )
    return tomb


def _count(result: PurgeResult, tomb: PurgeTombstone) -> None:
    result.tombstones.append(tomb.pk)
    result.blocks += tomb.block_count
    result.events += tomb.event_count


def _partition_purge(partition: AuditPartition, *, now: datetime, actor: str, reason: str) -> PurgeTombstone | None:
    with transaction.atomic():
        seal_state_locked()  # serialises with sealers and legal_hold_place
        run = _partition_run(partition, now)
        if not run:
            return None
        tomb = _purge_run(run, now=now, actor=actor, reason=reason)
    logger.info(
        "audit purge dropped a partition",
        extra={"partition": partition.name, "first_block": tomb.first_block, "last_block": tomb.last_block},
    )
    return tomb


def audit_month_purge(
    *, month: date, now: datetime | None = None, actor: str = "system", reason: str = "retention"
) -> PurgeResult:
    """Purge one calendar month (UTC) of ``recorded_at`` by dropping its partition, if it can go whole.

    The run of blocks covering the month's rows is purged (with its signed
    tombstone) only when every block in it is purgeable; otherwise nothing is
    removed and the result is empty.  PostgreSQL only (an empty result on
    SQLite); :func:`audit_purge` does this for every expired month and then
    the rest block by block.
    """
    now = now or timezone.now()
    result = PurgeResult()
    first_day = month.replace(day=1)
    for partition in _partition_candidates(now):
        if partition.low is not None and partition.low.date() == first_day:
            tomb = _partition_purge(partition, now=now, actor=actor, reason=reason)
            if tomb is not None:
                _count(result, tomb)
    return result


def audit_purge(*, now: datetime | None = None, actor: str = "system", reason: str = "retention") -> PurgeResult:
    """Remove sealed blocks past every contained tenant's retention, skipping legal holds.

    On PostgreSQL whole expired months go first, by dropping their partitions
    (see the module docstring); what is left is purged block run by block run.
    """
    now = now or timezone.now()
    result = PurgeResult()
    for partition in _partition_candidates(now):
        tomb = _partition_purge(partition, now=now, actor=actor, reason=reason)
        if tomb is not None:
            _count(result, tomb)
    after = 0
    while True:
        with transaction.atomic():
            seal_state_locked()  # serialises with sealers and legal_hold_place
            run, after = _next_run(after, now, result)
            if not run:
                break
            tomb = _purge_run(run, now=now, actor=actor, reason=reason)
        _count(result, tomb)
        after = tomb.last_block
        logger.info(
            "audit purge removed blocks",
            extra={"first_block": tomb.first_block, "last_block": tomb.last_block, "events": tomb.event_count},
        )
    return result
