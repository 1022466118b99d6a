"""Receipts: what a tenant keeps to prove later what the gateway recorded (and decided) for a request.

A receipt bundles the request's audit event as recorded, the signed header of
the block that seals it, the event's RFC 6962 inclusion proof in that block
and the block's signed checkpoint; ``audit.verify_receipt`` checks it
offline with nothing but the public key.  Built from the database on demand:
the request path never pays for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from audit.blocks import SeqLayout
from audit.canonical import FIELDS_BY_VERSION, canonical_event
from audit.merkle import inclusion_proof, tree_levels
from audit.models import AuditEvent, SealedBlock
from audit.services.checkpoints import checkpoint_for_block
from audit.verify_receipt import RECEIPT_KIND, RECEIPT_VERSION


@dataclass(frozen=True)
class ReceiptOutcome:
    """Either a finished ``receipt`` or, until the event is sealed and checkpointed, ``retry_after`` seconds."""

    receipt: dict[str, Any] | None
    retry_after: int


def receipt_retry_after() -> int:
    """Seconds until the next seal run has most likely sealed and checkpointed a new event."""
    interval = float(getattr(settings, "AUDIT_SEAL_INTERVAL_SECONDS", 60))
    lag = float(getattr(settings, "AUDIT_SEAL_LAG_SECONDS", 2.0))
    return max(1, math.ceil(interval + lag))


def audit_receipt_build(*, event: AuditEvent) -> ReceiptOutcome:
    """The receipt of ``event`` (the caller has already checked that it is the tenant's own)."""
    block = SealedBlock.objects.filter(first_seq__lte=event.seq, last_seq__gte=event.seq).first()
    checkpoint = checkpoint_for_block(number=block.number) if block is not None else None
    if block is None or checkpoint is None or checkpoint["block_hash"] != block.block_hash:
        return ReceiptOutcome(None, receipt_retry_after())
    layout = SeqLayout(block.first_seq, block.last_seq, block.gaps)
    index = layout.index(event.seq)
    if index is None:
        return ReceiptOutcome(None, receipt_retry_after())
    version = block.canonical_version
    row = AuditEvent.objects.filter(seq=event.seq).values_list(*FIELDS_BY_VERSION[version]).get()
    raw = bytes(block.leaf_hashes)
    leaves = [raw[i : i + 32] for i in range(0, len(raw), 32)]
    proof = inclusion_proof(tree_levels(leaves), index)
    receipt = {
        "kind": RECEIPT_KIND,
        "v": RECEIPT_VERSION,
        "request_id": event.request_id,
        # The record exactly as sealed: every canonical field is needed to rebuild the leaf, and all
        # of them describe the tenant's own request (its key prefix, address, input digest, decision).
        "event": canonical_event(row, version=version),
        "block": {"header": block.header(), "block_hash": block.block_hash, "signature": block.signature},
        "inclusion": {
            "leaf_index": index,
            "tree_size": block.count,
            "leaf_hash": leaves[index].hex(),
            "proof": [node.hex() for node in proof],
        },
        "checkpoint": checkpoint,
    }
    return ReceiptOutcome(receipt, 0)
