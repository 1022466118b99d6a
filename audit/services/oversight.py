"""What compliance officers check in the admin: seal and verification status, "Verify now", inclusion proofs.

Verification outcomes are recorded in the audit trail itself (action
``audit.verify``, with who asked, when, and the result), so the dashboard's
"last verification" is read from the same tamper-evident record it describes
and needs no table of its own.  A passing run also records, signed, the block
it verified through, where the next incremental run starts
(:mod:`audit.services.verification`).  "Verify now" records the request
(``audit.verify.requested``) and hands the work to a Celery worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Max, Min, Sum
from django.utils import timezone

from audit.blocks import SeqLayout
from audit.merkle import inclusion_proof, tree_levels, verify_inclusion
from audit.models import AuditEvent, SealedBlock
from audit.services.recording import audit_event_record
from audit.services.verification import VERIFY_ACTION, VerifyReport, audit_verify, verified_through_sign
from core.errors import NotFound
from core.queue import task_enqueue

VERIFY_REQUESTED_ACTION = "audit.verify.requested"


class EventNotSealed(NotFound):
    """The event exists but is not in a sealed block yet (or was never recorded)."""

    code, title = "audit_event_not_sealed", "Audit event not sealed"


@dataclass(frozen=True)
class ComplianceStatus:
    """The numbers on the compliance dashboard."""

    last_sealed_at: datetime | None
    sealed_blocks: int
    sealed_events: int
    unsealed_events: int
    oldest_unsealed_at: datetime | None
    last_verification: AuditEvent | None
    pending_request: AuditEvent | None

    @property
    def oldest_unsealed_age_seconds(self) -> float | None:
        """How long the oldest unsealed event has waited (``None`` when all are sealed)."""
        if self.oldest_unsealed_at is None:
            return None
        return (timezone.now() - self.oldest_unsealed_at).total_seconds()


def compliance_status_get() -> ComplianceStatus:
    """Seal head, unsealed backlog, the last recorded verification and any request still waiting for a worker."""
    blocks = SealedBlock.objects.aggregate(
        n=Max("number"), last=Max("sealed_at"), events=Sum("count"), head=Max("last_seq")
    )
    head = blocks["head"] or 0
    unsealed = AuditEvent.objects.filter(seq__gt=head)
    backlog = unsealed.aggregate(oldest=Min("occurred_at"))
    last = AuditEvent.objects.filter(action=VERIFY_ACTION).order_by("-seq").first()
    request = AuditEvent.objects.filter(action=VERIFY_REQUESTED_ACTION).order_by("-seq").first()
    pending = request if request is not None and (last is None or last.seq < request.seq) else None
    return ComplianceStatus(
        last_sealed_at=blocks["last"],
        sealed_blocks=SealedBlock.objects.count(),
        sealed_events=blocks["events"] or 0,
        unsealed_events=unsealed.count(),
        oldest_unsealed_at=backlog["oldest"],
        last_verification=last,
        pending_request=pending,
    )


AUDIT_VERIFY_TASK = "audit.verify"


def audit_verification_request(*, actor: str) -> AuditEvent:
    """Record that ``actor`` asked for a verification and hand it to a worker once that record commits.

    Broker-failure policy: the request stays recorded and a second event says
    it could not be queued, so the dashboard shows "not run" instead of waiting
    for a result that will never come; the officer can press "Verify now" again.
    """
    requested = audit_event_record(event_type=AuditEvent.Type.VERIFY, action=VERIFY_REQUESTED_ACTION, actor=actor)

    def broker_down(exc: Exception) -> None:
        audit_event_record(
            event_type=AuditEvent.Type.VERIFY,
            action=VERIFY_ACTION,
            actor=actor,
            detail={"ok": False, "summary": "not run: the task queue is unavailable", "request_seq": requested.seq},
        )

    transaction.on_commit(
        lambda: task_enqueue(task=AUDIT_VERIFY_TASK, args=(actor, requested.seq), on_broker_failure=broker_down)
    )
    return requested


def audit_verification_record(
    *, report: VerifyReport, actor: str, started: datetime, request_seq: int | None = None
) -> AuditEvent:
    """Record a verification's outcome (who, when, result, first problem) in the trail.

    A passing run over an unbroken chain also records the signed block it
    verified through: the next incremental run starts after it.
    """
    detail: dict[str, Any] = {
        "ok": report.ok,
        "mode": report.mode,
        "from_block": report.from_block,
        "summary": report.summary(),
        "blocks_verified": report.blocks_verified,
        "events_verified": report.events_verified,
        "unsealed_events": report.unsealed_events,
        "problem_count": report.problem_count,
        "first_problem": str(report.first_problem) if report.first_problem else "",
        "started_at": started.isoformat(),
        "request_seq": request_seq,
    }
    if report.ok and report.verified_through is not None:
        detail["verified_through"] = verified_through_sign(**report.verified_through)
    return audit_event_record(event_type=AuditEvent.Type.VERIFY, action=VERIFY_ACTION, actor=actor, detail=detail)


def audit_verification_run(*, actor: str, request_seq: int | None = None, full: bool = False) -> AuditEvent:
    """Verify the chain (incrementally unless ``full``) and record the outcome in the trail."""
    started = timezone.now()
    report = audit_verify(full=full)
    return audit_verification_record(report=report, actor=actor, started=started, request_seq=request_seq)


def audit_event_block_get(*, seq: int) -> SealedBlock | None:
    """The sealed block that covers event ``seq`` (``None`` while it is unsealed)."""
    block = SealedBlock.objects.defer("leaf_hashes", "event_ids").filter(first_seq__lte=seq, last_seq__gte=seq).first()
    if block is None or SeqLayout(block.first_seq, block.last_seq, block.gaps).index(seq) is None:
        return None
    return block


def audit_event_inclusion_proof(*, seq: int) -> dict[str, Any]:
    """An RFC 6962 inclusion proof of event ``seq`` in its signed block, checked before it is returned."""
    block = SealedBlock.objects.filter(first_seq__lte=seq, last_seq__gte=seq).first()
    index = SeqLayout(block.first_seq, block.last_seq, block.gaps).index(seq) if block is not None else None
    if block is None or index is None:
        raise EventNotSealed(f"Event {seq} is not sealed yet; an inclusion proof exists once it is.")
    raw = bytes(block.leaf_hashes)
    leaves = [raw[i : i + 32] for i in range(0, len(raw), 32)]
    proof = inclusion_proof(tree_levels(leaves), index)
    root = bytes.fromhex(block.merkle_root)
    if not verify_inclusion(leaf=leaves[index], index=index, size=len(leaves), proof=proof, root=root):
        # Never hand out a proof that does not verify; the block itself is damaged (verification will say so).
        raise EventNotSealed(f"Event {seq}: block {block.number} does not reproduce its Merkle root.")
    event = AuditEvent.objects.only("event_id").get(seq=seq)
    return {
        "event_id": str(event.event_id),
        "seq": seq,
        "block": block.number,
        "leaf_index": index,
        "tree_size": len(leaves),
        "leaf_hash": leaves[index].hex(),
        "proof": [h.hex() for h in proof],
        "merkle_root": block.merkle_root,
        "block_header": block.header(),
        "block_hash": block.block_hash,
        "signature": block.signature,
        "key_id": block.key_id,
        "algorithm": "RFC 6962 Merkle tree (SHA-256), Ed25519-signed block header",
    }
