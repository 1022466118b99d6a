"""Checkpoints outside the database: writing, sinks, the sealer's guard, chain starts, verification.

Policy (what happens when something outside the database fails or disagrees):

* **Primary log** (``AUDIT_CHECKPOINT_DIR``, default ``VAR_DIR/checkpoints``):
  mandatory.  A block is committed first and its checkpoint written right
  after; if that write fails, the seal run raises
  :class:`AuditCheckpointWriteFailed` and the next run writes the missing
  checkpoint before it seals anything new, so at most the newest block can
  lack a checkpoint, and never silently.
* **Sinks** (``AUDIT_CHECKPOINT_SINKS``: directories on other volumes or
  object-store mounts, and ``http(s)://`` witness URLs that answer with their
  own signature, stored beside the checkpoint in the primary log): best
  effort by default.  A failure is logged, counted in
  ``maas_audit_checkpoint_sink_failures_total{sink}`` and retried on the next
  seal run for the newest ``AUDIT_CHECKPOINT_SINK_BACKFILL`` checkpoints.
  With ``AUDIT_CHECKPOINT_SINKS_REQUIRED`` a sink failure is treated like a
  primary one: the run fails and no new block is sealed until it succeeds.
* **Disagreement** between the database and the newest checkpoint (a block
  missing, a different block hash, a rewound seal state) or events waiting
  beyond an empty trail with no chain started: the sealer refuses
  (:class:`AuditChainMismatch`), counts ``maas_audit_seal_refusals_total``
  and records an ``audit.alarm`` event.  Only ``manage.py audit_chain_start
  --reason`` starts a new chain: a signed chain-start record that names the
  head it abandons.  An empty trail's very first seal starts epoch 1 by
  itself when ``AUDIT_CHAIN_AUTO_START`` allows it (default: outside
  production).
"""

from __future__ import annotations

import json
import logging
import re
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from prometheus_client import Counter

from audit.blocks import GENESIS_HASH, header_bytes, header_hash, verify_signature
from audit.canonical import timestamp_text
from audit.checkpoints import (
    CHAIN_START_KIND,
    CHECKPOINT_KIND,
    CHECKPOINT_VERSION,
    CheckpointConflict,
    CheckpointLog,
    document_bytes,
    document_problem,
    key_fingerprint,
    load_document,
    sign_document,
)
from audit.errors import (
    AuditChainMismatch,
    AuditChainStartRefused,
    AuditCheckpointNotFound,
    AuditCheckpointWriteFailed,
)
from audit.models import AuditEvent, PurgeTombstone, SealedBlock, SealState
from audit.signing import signing_identity, trusted_public_keys
from core.env import is_production

logger = logging.getLogger("policy.audit")

SEAL_REFUSALS = Counter(
    "maas_audit_seal_refusals_total",
    "Seal runs refused because the database chain disagrees with the checkpoints kept outside it.",
    ["reason"],
)
CHECKPOINTS_WRITTEN = Counter("maas_audit_checkpoints_written_total", "Checkpoints written to the primary log.")
SINK_FAILURES = Counter(
    "maas_audit_checkpoint_sink_failures_total", "Checkpoint deliveries to a sink that failed.", ["sink"]
)

# Refusal reasons (metric label and alarm detail).
HEAD_MISSING = "head_missing"
HEAD_MISMATCH = "head_mismatch"
STATE_REWOUND = "state_rewound"
LOG_EMPTY = "log_empty"
LOG_INVALID = "log_invalid"
CHECKPOINTS_MISSING = "checkpoints_missing"
NO_CHAIN = "no_chain"


# -- configuration -------------------------------------------------------------
def checkpoint_log() -> CheckpointLog:
    """The primary checkpoint log."""
    return CheckpointLog(settings.AUDIT_CHECKPOINT_DIR)


def chain_auto_start() -> bool:
    """Whether an empty trail's first seal may open epoch 1 without an operator."""
    value = getattr(settings, "AUDIT_CHAIN_AUTO_START", None)
    return (not is_production()) if value is None else bool(value)


@dataclass(frozen=True)
class Sink:
    """A configured copy of the log: ``dir`` (a path) or ``witness`` (an HTTP URL)."""

    kind: str
    target: str

    @property
    def label(self) -> str:
        """A file-name-safe name (metric label and witness file suffix)."""
        text = re.sub(r"^[a-z]+://", "", self.target)
        return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:80] or "sink"


def checkpoint_sinks() -> list[Sink]:
    """``AUDIT_CHECKPOINT_SINKS`` parsed: URLs are witnesses, anything else a directory."""
    sinks = []
    for raw in getattr(settings, "AUDIT_CHECKPOINT_SINKS", ()) or ():
        text = str(raw).strip()
        if text:
            kind = "witness" if text.startswith(("http://", "https://")) else "dir"
            sinks.append(Sink(kind, text))
    return sinks


# -- documents -------------------------------------------------------------------
def checkpoint_of_block(*, block: SealedBlock, epoch: int) -> dict[str, Any]:
    """The signed checkpoint of ``block`` (deterministic: same block, same bytes)."""
    identity = signing_identity()
    body = {
        "kind": CHECKPOINT_KIND,
        "v": CHECKPOINT_VERSION,
        "epoch": epoch,
        "number": block.number,
        "last_seq": block.last_seq,
        "block_hash": block.block_hash,
        "merkle_root": block.merkle_root,
        "sealed_at": timestamp_text(block.sealed_at),
        "key_id": identity.key_id,
        "key_fingerprint": key_fingerprint(identity.key_id),
    }
    return sign_document(body, lambda message: identity.sign(message))


def _deliver_witness(sink: Sink, document: dict[str, Any], log: CheckpointLog) -> None:
    path = log.witness_path(int(document["epoch"]), int(document["number"]), sink.label)
    if path.exists():
        return
    if not sink.target.startswith(("http://", "https://")):
        raise ValueError(f"witness URL {sink.target!r} is not http(s)")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        sink.target,
        data=document_bytes(document),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    timeout = float(getattr(settings, "AUDIT_CHECKPOINT_WITNESS_TIMEOUT", 5.0))
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (configured URL)
        answer = json.loads(response.read())
    if not isinstance(answer, dict) or not answer.get("signature"):
        raise ValueError("the witness answered without a signature")
    stored = {"witness": sink.target, "checkpoint_signature": document["signature"], "response": answer}
    log.write(path, document_bytes(stored))


def _deliver(sink: Sink, document: dict[str, Any], log: CheckpointLog) -> None:
    if sink.kind == "dir":
        CheckpointLog(sink.target).put(document)
    elif document["kind"] == CHECKPOINT_KIND:
        _deliver_witness(sink, document, log)


def _sinks_deliver(documents: list[dict[str, Any]], log: CheckpointLog) -> list[str]:
    """Hand ``documents`` to every sink; returns the failures (already logged and counted)."""
    failures = []
    for sink in checkpoint_sinks():
        for document in documents:
            try:
                _deliver(sink, document, log)
            except (OSError, ValueError, CheckpointConflict) as exc:
                SINK_FAILURES.labels(sink=sink.label).inc()
                logger.error("checkpoint sink failed", extra={"sink": sink.target, "error": str(exc)})
                failures.append(f"{sink.target}: {exc}")
                break  # later documents would fail alike; the next run retries them
    if failures and getattr(settings, "AUDIT_CHECKPOINT_SINKS_REQUIRED", False):
        raise AuditCheckpointWriteFailed("Required checkpoint sink(s) failed: " + "; ".join(failures))
    return failures


def _primary_put(log: CheckpointLog, document: dict[str, Any]) -> None:
    try:
        if log.put(document):
            CHECKPOINTS_WRITTEN.inc()
    except OSError as exc:
        logger.error("checkpoint write failed", extra={"path": str(log.root), "error": str(exc)})
        raise AuditCheckpointWriteFailed(f"Checkpoint could not be written to {log.root}: {exc}") from exc


def checkpoint_publish(*, block: SealedBlock, epoch: int) -> dict[str, Any]:
    """Write ``block``'s checkpoint to the primary log, then to every sink (see the module policy)."""
    log = checkpoint_log()
    document = checkpoint_of_block(block=block, epoch=epoch)
    try:
        _primary_put(log, document)
    except CheckpointConflict as exc:
        _refuse(HEAD_MISMATCH, f"block {block.number} differs from its checkpoint in epoch {epoch}: {exc}")
    _sinks_deliver([document], log)
    return document


def _sinks_backfill(log: CheckpointLog, epoch: int, newest: int | None) -> None:
    """Retry sinks on the newest checkpoints (a sink that was down catches up)."""
    if not checkpoint_sinks():
        return
    documents: list[dict[str, Any]] = []
    start = log.chain_start(epoch)
    if start is not None:
        documents.append(start)
    if newest:
        backfill = int(getattr(settings, "AUDIT_CHECKPOINT_SINK_BACKFILL", 16))
        for number in range(max(1, newest - backfill + 1), newest + 1):
            document = log.get(epoch, number)
            if document is not None:
                documents.append(document)
    _sinks_deliver(documents, log)


# -- refusing loudly --------------------------------------------------------------
def _refuse(reason: str, message: str) -> None:
    """Count, log and record an alarm, then raise: the sealer never starts over silently."""
    from audit.services.recording import audit_event_record

    SEAL_REFUSALS.labels(reason=reason).inc()
    logger.critical("audit sealing refused", extra={"reason": reason, "detail": message})
    try:
        audit_event_record(
            event_type=AuditEvent.Type.ALARM,
            action="seal.refused",
            actor="system:audit.seal",
            reason_code=reason,
            detail={"reason": reason, "message": message},
        )
    except Exception:  # the refusal itself must still surface if the alarm cannot be stored
        logger.exception("audit alarm could not be recorded")
    raise AuditChainMismatch(
        f"Audit sealing refused ({reason}): {message}. Investigate with `manage.py verify_audit`; start a new "
        "chain only deliberately with `manage.py audit_chain_start --reason ...`."
    )


# -- the database head --------------------------------------------------------------
@dataclass(frozen=True)
class _Head:
    number: int
    block_hash: str
    last_seq: int


def _db_head() -> _Head:
    """Newest sealed block or purge tombstone (the evidence, not the bookkeeping row)."""
    block = SealedBlock.objects.order_by("-number").only("number", "block_hash", "last_seq").first()
    tomb = PurgeTombstone.objects.order_by("-last_block").only("last_block", "last_block_hash", "last_seq").first()
    if block is not None and (tomb is None or block.number > tomb.last_block):
        return _Head(block.number, block.block_hash, block.last_seq)
    if tomb is not None:
        return _Head(tomb.last_block, tomb.last_block_hash, tomb.last_seq)
    return _Head(0, GENESIS_HASH, 0)


def _db_hash_of(number: int) -> tuple[str | None, bool]:
    """(block hash of ``number`` as the database holds it, whether it was purged); hash ``None`` when gone."""
    if number == 0:
        return GENESIS_HASH, False
    block = SealedBlock.objects.filter(number=number).only("block_hash").first()
    if block is not None:
        return block.block_hash, False
    tomb = PurgeTombstone.objects.filter(first_block__lte=number, last_block__gte=number).first()
    if tomb is None:
        return None, False
    return (tomb.last_block_hash if tomb.last_block == number else None), True


class _Refusal(Exception):
    """A disagreement found inside the guard's transaction, raised as a loud refusal after it."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def _valid_document(document: dict[str, Any] | None, kind: str, where: str) -> dict[str, Any]:
    problem = "missing" if document is None else document_problem(document, trusted_public_keys(), kind=kind)
    if problem is not None:
        raise _Refusal(LOG_INVALID, f"{where}: {problem}")
    assert document is not None
    return document


# -- chain start ------------------------------------------------------------------------
def audit_chain_start(*, reason: str, actor: str, record_event: bool = True) -> dict[str, Any]:
    """Open a new epoch at the database's current head: an explicit, signed, audited decision.

    The record names the head it continues from and the newest checkpoint of
    the epoch it leaves, so the restart is visible to every verifier forever.
    ``record_event=False`` is for the automatic first start of an empty trail
    only: its signed record is the genesis itself, and an extra event would
    just be the first thing it seals.
    """
    reason = (reason or "").strip()
    if not reason:
        raise AuditChainStartRefused("Starting a new audit chain needs a reason.")
    log = checkpoint_log()
    epochs = log.epochs()
    previous: dict[str, Any] | None = None
    if epochs:
        newest = log.newest_number(epochs[-1])
        cp = log.get(epochs[-1], newest) if newest else None
        previous = {"epoch": epochs[-1], "number": newest or 0, "block_hash": cp["block_hash"] if cp else None}
    identity = signing_identity()
    with transaction.atomic():
        # The seal-state lock keeps a sealer from adding a block between reading the head and starting.
        from audit.services.sealing import seal_state_locked

        state = seal_state_locked()
        head = _db_head()
        body = {
            "kind": CHAIN_START_KIND,
            "v": CHECKPOINT_VERSION,
            "epoch": (epochs[-1] + 1) if epochs else 1,
            "after_block": head.number,
            "after_hash": head.block_hash,
            "after_last_seq": head.last_seq,
            "previous": previous,
            "reason": reason[:500],
            "actor": actor[:200],
            "started_at": timestamp_text(timezone.now()),
            "key_id": identity.key_id,
            "key_fingerprint": key_fingerprint(identity.key_id),
        }
        document = sign_document(body, lambda message: identity.sign(message))
        try:
            log.put(document)
        except (OSError, CheckpointConflict) as exc:
            raise AuditCheckpointWriteFailed(f"Chain start could not be written to {log.root}: {exc}") from exc
        # The bookkeeping row follows the evidence it now continues from.
        if (state.head_number, state.head_hash, state.head_last_seq) != (head.number, head.block_hash, head.last_seq):
            state.head_number, state.head_hash, state.head_last_seq = head.number, head.block_hash, head.last_seq
            state.save(update_fields=["head_number", "head_hash", "head_last_seq", "updated_at"])
    if record_event:
        from audit.services.recording import audit_event_record

        keys = ("epoch", "after_block", "after_hash", "after_last_seq", "previous", "reason")
        audit_event_record(
            event_type=AuditEvent.Type.CHAIN_START,
            action="chain.start",
            actor=actor[:200],
            detail={k: body[k] for k in keys},
        )
    _sinks_deliver([document], log)
    logger.warning("audit chain started", extra={"epoch": body["epoch"], "after_block": head.number})
    return document


# -- the sealer's guard ---------------------------------------------------------------------
def checkpoint_guard() -> int | None:
    """Check the database head against the newest checkpoint; return the epoch to seal in.

    Writes checkpoints the database has and the log lacks (a crash between a
    block's commit and its checkpoint) when those blocks chain from the newest
    checkpoint.  Refuses (:func:`_refuse`) on any disagreement.  ``None``: no
    chain yet and nothing to seal.
    """
    log = checkpoint_log()
    try:
        with transaction.atomic():
            # Under the sealers' lock, so a concurrent seal cannot move the head between the reads.
            from audit.services.sealing import seal_state_locked

            state = seal_state_locked()
            head = _db_head()
            epochs = log.epochs()
            outcome = _guard_epoch(log, epochs[-1], head, state) if epochs else _guard_empty_log(log, head)
    except (_Refusal, ValueError) as exc:
        reason, message = (exc.reason, exc.message) if isinstance(exc, _Refusal) else (LOG_INVALID, str(exc))
        _refuse(reason, message)
    if outcome == "start":
        audit_chain_start(reason="first seal of an empty trail", actor="system:audit.seal", record_event=False)
        return log.epochs()[-1]
    if outcome is None:
        return None
    epoch, anchor = outcome
    newest = anchor.number
    if head.number > anchor.number:
        _catch_up(log, epoch, anchor)
        newest = head.number
    _sinks_backfill(log, epoch, newest or None)
    return epoch


def _guard_empty_log(log: CheckpointLog, head: _Head) -> str | None:
    if head.number:
        raise _Refusal(
            LOG_EMPTY,
            f"the checkpoint log {log.root} is empty but the database holds sealed blocks up to {head.number} "
            "(checkpoints deleted, or a trail from before checkpoints: adopt it with audit_chain_start)",
        )
    if not AuditEvent.objects.exists():
        return None
    if not chain_auto_start():
        raise _Refusal(NO_CHAIN, "events are waiting but no audit chain was started (run audit_chain_start)")
    return "start"


def _guard_epoch(log: CheckpointLog, epoch: int, head: _Head, state: SealState) -> tuple[int, _Head]:
    start = _valid_document(log.chain_start(epoch), CHAIN_START_KIND, f"chain start of epoch {epoch}")
    newest = log.newest_number(epoch, hint=head.number)
    if newest is not None:
        anchor_doc = _valid_document(log.get(epoch, newest), CHECKPOINT_KIND, f"checkpoint {newest} (epoch {epoch})")
        anchor = _Head(newest, anchor_doc["block_hash"], anchor_doc["last_seq"])
    else:
        anchor = _Head(start["after_block"], start["after_hash"], start["after_last_seq"])
    db_hash, purged = _db_hash_of(anchor.number)
    if db_hash is None and not purged:
        raise _Refusal(
            HEAD_MISSING,
            f"block {anchor.number}, checkpointed outside the database (epoch {epoch}), is missing from it; "
            f"the database head is block {head.number} (rewound or truncated)",
        )
    if db_hash is not None and db_hash != anchor.block_hash:
        raise _Refusal(
            HEAD_MISMATCH,
            f"block {anchor.number} in the database has hash {db_hash[:16]}..., its checkpoint (epoch {epoch}) "
            f"says {anchor.block_hash[:16]}... (re-sealed)",
        )
    if head.number > anchor.number + 1:
        # A crash between a block's commit and its checkpoint leaves one block behind, never more.
        raise _Refusal(
            CHECKPOINTS_MISSING,
            f"blocks {anchor.number + 1}-{head.number} have no checkpoint in epoch {epoch} "
            "(checkpoint log truncated or deleted)",
        )
    if (state.head_number, state.head_last_seq) != (head.number, head.last_seq):
        raise _Refusal(
            STATE_REWOUND,
            f"the seal state says block {state.head_number} (seq {state.head_last_seq}) but the newest sealed "
            f"block is {head.number} (seq {head.last_seq})",
        )
    return epoch, anchor


def _catch_up(log: CheckpointLog, epoch: int, anchor: _Head) -> None:
    """Checkpoint blocks sealed after ``anchor`` whose checkpoints were never written."""
    keys = trusted_public_keys()
    previous = anchor.block_hash
    blocks = SealedBlock.objects.filter(number__gt=anchor.number).order_by("number").defer("leaf_hashes", "event_ids")
    for block in blocks.iterator(chunk_size=100):
        header = block.header()
        key = keys.get(block.key_id)
        if (
            block.prev_block_hash != previous
            or header_hash(header) != block.block_hash
            or key is None
            or not verify_signature(key, header_bytes(header), block.signature)
        ):
            _refuse(
                HEAD_MISMATCH,
                f"block {block.number} has no checkpoint and does not chain validly from checkpoint "
                f"{block.number - 1} (epoch {epoch})",
            )
        checkpoint_publish(block=block, epoch=epoch)
        previous = block.block_hash


# -- reads for the API ------------------------------------------------------------------------
def checkpoint_get(*, number: int | None = None, epoch: int | None = None) -> dict[str, Any]:
    """A signed checkpoint (the newest of the current epoch by default), or ``AuditCheckpointNotFound``."""
    log = checkpoint_log()
    epochs = log.epochs()
    if epoch is None:
        epoch = epochs[-1] if epochs else None
    if epoch is None or epoch not in epochs:
        raise AuditCheckpointNotFound("No audit checkpoint has been written yet." if not epochs else "No such epoch.")
    if number is None:
        number = log.newest_number(epoch)
        if number is None:
            raise AuditCheckpointNotFound(f"Epoch {epoch} has no checkpoint yet.")
    document = log.get(epoch, number)
    if document is None:
        raise AuditCheckpointNotFound(f"No checkpoint for block {number} in epoch {epoch}.")
    return document


def checkpoint_for_block(*, number: int) -> dict[str, Any] | None:
    """The checkpoint that covers block ``number`` in the newest epoch holding one, or ``None``."""
    log = checkpoint_log()
    for epoch in reversed(log.epochs()):
        document = log.get(epoch, number)
        if document is not None:
            return document
    return None


# -- verification against the log --------------------------------------------------------------
CHECKPOINT_MISSING = "checkpoint_missing"
CHECKPOINT_MISMATCH = "checkpoint_mismatch"
CHECKPOINT_INVALID = "checkpoint_invalid"
BLOCK_GONE = "block_gone"


@dataclass
class CheckpointFinding:
    """One disagreement between the database and the checkpoint log, by block number."""

    kind: str
    block: int
    message: str


@dataclass
class CheckpointReport:
    """What comparing the trail with the checkpoint log found."""

    checkpoints: int = 0
    epochs: int = 0
    restarts: list[str] = field(default_factory=list)
    findings: list[CheckpointFinding] = field(default_factory=list)


def _expected_checkpoints(
    log: CheckpointLog, report: CheckpointReport, from_block: int = 0
) -> tuple[dict[int, dict[str, Any]], int]:
    """Block number -> checkpoint that governs it (later epochs supersede the blocks they restart after).

    Returns the map and the block after which checkpoints are required (blocks
    before the first epoch's anchor predate checkpoints).  Checkpoints of
    blocks before ``from_block`` are not read (an incremental verification
    checked them before; reading one file per block ever sealed is what would
    make it slow).
    """
    keys = trusted_public_keys()
    expected: dict[int, dict[str, Any]] = {}
    floor = 0
    epochs = log.epochs()
    report.epochs = len(epochs)
    for i, epoch in enumerate(epochs):
        try:
            start = log.chain_start(epoch)
        except ValueError as exc:
            start, problem = None, f"unreadable: {exc}"
        else:
            problem = "missing" if start is None else document_problem(start, keys, kind=CHAIN_START_KIND)
        if problem is not None or start is None:
            report.findings.append(CheckpointFinding(CHECKPOINT_INVALID, 0, f"chain start of epoch {epoch}: {problem}"))
            continue
        after = int(start["after_block"])
        if i == 0:
            floor = after
        else:
            superseded = sorted(n for n in expected if n > after)
            left = f"; checkpoints {superseded[0]}-{superseded[-1]} of earlier epochs left behind" if superseded else ""
            report.restarts.append(
                f"epoch {epoch} restarted the chain after block {after} ({start['actor']}: {start['reason']}){left}"
            )
            for n in superseded:
                del expected[n]
        db_hash, _ = _db_hash_of(after)
        if after and db_hash is not None and db_hash != start["after_hash"]:
            report.findings.append(
                CheckpointFinding(
                    CHECKPOINT_MISMATCH, after, f"block {after}: differs from the head epoch {epoch} started after"
                )
            )
        for number in log.numbers(epoch):
            if number < from_block:
                continue
            path = log.checkpoint_path(epoch, number)
            try:
                document = load_document(path)
            except ValueError as exc:
                problem = f"unreadable: {exc}"
            else:
                problem = document_problem(document, keys)
                if problem is None and (document["number"], document["epoch"]) != (number, epoch):
                    problem = "stored under another block's name"
            if problem is not None:
                report.findings.append(CheckpointFinding(CHECKPOINT_INVALID, number, f"checkpoint {path}: {problem}"))
                continue
            report.checkpoints += 1
            expected[number] = document
    return expected, floor


def checkpoints_verify(*, from_block: int = 0) -> CheckpointReport:
    """Compare every sealed block (and purge tombstone) from ``from_block`` on with the checkpoint log.

    Findings come in block order.
    """
    log = checkpoint_log()
    report = CheckpointReport()
    expected, floor = _expected_checkpoints(log, report, from_block)
    if not log.epochs():
        head = _db_head()
        if head.number:
            report.findings.append(
                CheckpointFinding(
                    CHECKPOINT_MISSING,
                    1,
                    f"checkpoints 1-{head.number} missing: the checkpoint log {log.root} is empty "
                    "(deleted, or never started)",
                )
            )
        return report
    db = {
        number: (block_hash, merkle_root, last_seq)
        for number, block_hash, merkle_root, last_seq in SealedBlock.objects.filter(number__gte=from_block).values_list(
            "number", "block_hash", "merkle_root", "last_seq"
        )
    }
    tombs = list(PurgeTombstone.objects.values_list("first_block", "last_block", "last_block_hash"))

    def purged(number: int) -> tuple[bool, str | None]:
        for first, last, last_hash in tombs:
            if first <= number <= last:
                return True, (last_hash if number == last else None)
        return False, None

    findings: list[CheckpointFinding] = []
    missing_run: list[int] = []

    def flush_missing() -> None:
        if missing_run:
            a, b = missing_run[0], missing_run[-1]
            span = f"{a}" if a == b else f"{a}-{b}"
            findings.append(
                CheckpointFinding(
                    CHECKPOINT_MISSING,
                    a,
                    f"checkpoint{'s' if a != b else ''} {span} missing from the log {log.root} "
                    "(log truncated or checkpoints deleted)",
                )
            )
            missing_run.clear()

    top = max([*db, *expected, 0])
    for number in range(max(floor + 1, from_block), top + 1):
        cp = expected.get(number)
        row = db.get(number)
        if cp is None:
            if row is not None:
                missing_run.append(number)
            continue
        flush_missing()
        if row is None:
            was_purged, last_hash = purged(number)
            if not was_purged:
                findings.append(
                    CheckpointFinding(
                        BLOCK_GONE,
                        number,
                        f"block {number}: checkpointed (epoch {cp['epoch']}) but missing from the database "
                        "(rewound, truncated or seal tables wiped)",
                    )
                )
            elif last_hash is not None and last_hash != cp["block_hash"]:
                findings.append(
                    CheckpointFinding(
                        CHECKPOINT_MISMATCH, number, f"block {number}: purge tombstone disagrees with its checkpoint"
                    )
                )
            continue
        if row != (cp["block_hash"], cp["merkle_root"], cp["last_seq"]):
            findings.append(
                CheckpointFinding(
                    CHECKPOINT_MISMATCH,
                    number,
                    f"block {number}: differs from its checkpoint (epoch {cp['epoch']}): re-sealed with "
                    "different content",
                )
            )
    flush_missing()
    report.findings.extend(sorted(findings, key=lambda f: f.block))
    return report


def checkpoint_in_trail(*, document: dict[str, Any]) -> str | None:
    """Why a checkpoint saved earlier (by anyone) is not in the trail any more; ``None`` when it is."""
    problem = document_problem(document, trusted_public_keys())
    if problem is not None:
        return f"the saved checkpoint is not valid here: {problem}"
    number = int(document["number"])
    db_hash, purged = _db_hash_of(number)
    if db_hash is None and purged:
        return None if number else "invalid block number"
    if db_hash is None:
        return f"block {number} of the saved checkpoint is missing from the trail (rewound or truncated)"
    if db_hash != document["block_hash"]:
        return f"block {number} in the trail differs from the saved checkpoint (re-sealed)"
    block = SealedBlock.objects.filter(number=number).only("merkle_root", "last_seq").first()
    if block is not None and (block.merkle_root, block.last_seq) != (document["merkle_root"], document["last_seq"]):
        return f"block {number} in the trail differs from the saved checkpoint (re-sealed)"
    return None


def checkpoint_load_file(path: Path) -> dict[str, Any]:
    """Read a saved checkpoint file (``ValueError`` when it is not JSON)."""
    return load_document(path)
