"""Sealing: unsealed events become signed, hash-chained Merkle blocks.

How it stays off the request path:

* Requests only INSERT events; they never read or lock anything the sealer
  writes.  Sealers serialise among themselves on the ``SealState`` row (and the
  unique block number backs that up), nothing else.
* A block is computed from a read-only scan *outside* the write transaction,
  which then only re-checks the chain head and inserts one row, so even on
  SQLite (one writer at a time) the write lock is held for milliseconds.

Late commits: a sequence number is taken at INSERT but becomes visible at
COMMIT, so an event with a lower ``seq`` can appear after a higher one.  The
sealer therefore stops at the newest event recorded at least
``AUDIT_SEAL_LAG_SECONDS`` ago (by the database's clock, ``recorded_at``);
any sequence number below that point which is still invisible belongs to a
rolled-back transaction (PostgreSQL sequences skip on rollback).  The block
lists such gaps explicitly and signs them, so the verifier can later tell a
legitimate gap from a deleted event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Min
from django.utils import timezone

from audit.blocks import GENESIS_HASH, gaps_of, header_bytes, header_hash
from audit.canonical import CANONICAL_VERSION, EVENT_FIELDS, canonical_bytes, canonical_event
from audit.merkle import leaf_hash, merkle_root
from audit.models import AuditEvent, PurgeTombstone, SealedBlock, SealState
from audit.services.checkpoints import checkpoint_guard, checkpoint_publish
from audit.signing import signing_identity

logger = logging.getLogger("policy.audit")

_FETCH_CHUNK = 2000
_OCCURRED_AT = EVENT_FIELDS.index("occurred_at")
_EVENT_ID = EVENT_FIELDS.index("event_id")


def seal_block_size() -> int:
    """Most events per block (bounded so a block is verified in bounded memory)."""
    return int(getattr(settings, "AUDIT_SEAL_BLOCK_SIZE", 10_000))


def seal_lag_seconds() -> float:
    """Events younger than this are left for the next run (late commits, see module doc)."""
    return float(getattr(settings, "AUDIT_SEAL_LAG_SECONDS", 2.0))


@dataclass
class SealResult:
    """What one sealing run did."""

    blocks: list[int] = field(default_factory=list)
    events: int = 0
    gap_seqs: int = 0


@dataclass
class _Candidate:
    first_seq: int
    last_seq: int
    count: int
    gaps: list[list[int]]
    first_occurred_at: datetime
    last_occurred_at: datetime
    leaves: bytes
    event_ids: bytes
    root: str


def _db_now() -> datetime:
    """The database's clock (``recorded_at`` is set by it, so the lag is measured on it)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement_timestamp()")
            return cursor.fetchone()[0]
    return timezone.now()


def seal_state_locked() -> SealState:
    """Lock and return the chain head, rebuilding it from blocks/tombstones if it was lost.

    Must run inside a transaction.  This lock is shared only by sealers, the
    purge and legal-hold placement; request handling never takes it.
    """
    state = SealState.objects.select_for_update().filter(pk=1).first()
    if state is not None:
        return state
    block = SealedBlock.objects.order_by("-number").only("number", "block_hash", "last_seq").first()
    tomb = PurgeTombstone.objects.order_by("-last_block").first()
    head = SealState(pk=1)
    if block is not None and (tomb is None or block.number > tomb.last_block):
        head.head_number, head.head_hash, head.head_last_seq = block.number, block.block_hash, block.last_seq
    elif tomb is not None:
        head.head_number, head.head_hash, head.head_last_seq = tomb.last_block, tomb.last_block_hash, tomb.last_seq
    try:
        with transaction.atomic():
            head.save(force_insert=True)
    except IntegrityError:
        pass  # another process created it first
    return SealState.objects.select_for_update().get(pk=1)


def _head_snapshot() -> tuple[int, int, str]:
    state = SealState.objects.filter(pk=1).first()
    if state is None:
        with transaction.atomic():
            state = seal_state_locked()
    return state.head_last_seq, state.head_number, state.head_hash


def _horizon(start: int, lag: float) -> int | None:
    """Newest sequence number recorded at least ``lag`` seconds ago (computed once per run)."""
    cutoff = _db_now() - timedelta(seconds=lag)
    return AuditEvent.objects.filter(seq__gte=start, recorded_at__lte=cutoff).aggregate(top=Max("seq"))["top"]


def _build_candidate(start: int, horizon: int, block_size: int) -> _Candidate | None:
    first = AuditEvent.objects.filter(seq__gte=start, seq__lte=horizon).aggregate(low=Min("seq"))["low"]
    if first is None:
        return None
    # A bounded seq window keeps every block query an index range scan: an
    # open range with ORDER BY + LIMIT lets PostgreSQL (without fresh stats)
    # scan and sort the whole backlog for each block.
    window_end = min(horizon, first + 2 * block_size)
    rows = (
        AuditEvent.objects.filter(seq__gte=first, seq__lte=window_end)
        .order_by("seq")
        .values_list(*EVENT_FIELDS)[:block_size]
    )
    leaves = bytearray()
    ids = bytearray()
    seqs: list[int] = []
    first_at = last_at = None
    for row in rows.iterator(chunk_size=_FETCH_CHUNK):
        seqs.append(row[0])
        leaves += leaf_hash(canonical_bytes(canonical_event(row)))
        ids += row[_EVENT_ID].bytes
        occurred = row[_OCCURRED_AT]
        first_at = occurred if first_at is None or occurred < first_at else first_at
        last_at = occurred if last_at is None or occurred > last_at else last_at
    if not seqs:
        return None
    root = merkle_root([bytes(leaves[i : i + 32]) for i in range(0, len(leaves), 32)])
    return _Candidate(
        first_seq=start,
        last_seq=seqs[-1],
        count=len(seqs),
        gaps=gaps_of(start, seqs),
        first_occurred_at=first_at,
        last_occurred_at=last_at,
        leaves=bytes(leaves),
        event_ids=bytes(ids),
        root=root.hex(),
    )


def _seal_next_block(*, block_size: int, horizon: int) -> SealedBlock | bool | None:
    """Seal one block up to ``horizon``; ``None`` when nothing is sealable, ``False`` when another sealer won."""
    head_last_seq, _, _ = _head_snapshot()
    start = head_last_seq + 1
    if start > horizon:
        return None
    candidate = _build_candidate(start, horizon, block_size)
    if candidate is None:
        return None
    identity = signing_identity()
    with transaction.atomic():
        state = seal_state_locked()
        if state.head_last_seq != head_last_seq:
            return False  # someone sealed these events meanwhile; start over from the new head
        # The unsaved row builds its own header, so what is signed here is by
        # construction what verifiers rebuild from the stored row.
        block = SealedBlock(
            number=state.head_number + 1,
            canonical_version=CANONICAL_VERSION,
            first_seq=candidate.first_seq,
            last_seq=candidate.last_seq,
            count=candidate.count,
            gaps=candidate.gaps,
            first_occurred_at=candidate.first_occurred_at,
            last_occurred_at=candidate.last_occurred_at,
            merkle_root=candidate.root,
            prev_block_hash=state.head_hash or GENESIS_HASH,
            key_id=identity.key_id,
            # timezone.now() has microsecond precision, as the header text and
            # the database column do, so re-reading the row rebuilds the same header.
            sealed_at=timezone.now(),
            leaf_hashes=candidate.leaves,
            event_ids=candidate.event_ids,
        )
        header = block.header()
        block.block_hash = header_hash(header)
        block.signature = identity.sign(header_bytes(header))
        block.save()
        state.head_number = block.number
        state.head_hash = block.block_hash
        state.head_last_seq = block.last_seq
        state.save(update_fields=["head_number", "head_hash", "head_last_seq", "updated_at"])
    if candidate.gaps:
        logger.info("sealed over sequence gaps", extra={"block": block.number, "gaps": candidate.gaps[:20]})
    return block


def audit_seal(*, max_blocks: int | None = None) -> SealResult:
    """Seal every sealable event in sequence order, one bounded block at a time.

    First the chain head is checked against the checkpoint log outside the
    database (:func:`checkpoint_guard`, which refuses loudly on any
    disagreement); each committed block's signed checkpoint is then written
    there before the next block is sealed.
    """
    epoch = checkpoint_guard()
    if epoch is None:
        return SealResult()
    return _seal_loop(max_blocks=max_blocks, on_block=lambda block: checkpoint_publish(block=block, epoch=epoch))


def _seal_loop(*, max_blocks: int | None, on_block: Callable[[SealedBlock], Any] | None) -> SealResult:
    """The sealing loop itself (what a guard-less sealer would do: tests replay attacks with it)."""
    result = SealResult()
    block_size = seal_block_size()
    horizon = _horizon(_head_snapshot()[0] + 1, seal_lag_seconds())
    if horizon is None:
        return result
    races = 0
    while max_blocks is None or len(result.blocks) < max_blocks:
        outcome = _seal_next_block(block_size=block_size, horizon=horizon)
        if outcome is None:
            break
        if outcome is False:
            races += 1
            if races > 10:
                break  # another sealer is busy on the same events; it will finish them
            continue
        if on_block is not None:
            on_block(outcome)
        result.blocks.append(outcome.number)
        result.events += outcome.count
        result.gap_seqs += (outcome.last_seq - outcome.first_seq + 1) - outcome.count
    return result
