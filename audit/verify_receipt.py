"""Verify an audit receipt offline, with nothing but the gateway's public key.

Usage::

    python -m audit.verify_receipt receipt.json --public-key audit-key.pem

A receipt (``GET /v1/audit/receipts/{request_id}``) holds the audit event of
one of your requests exactly as the gateway recorded it, the sealed block
header that covers it, the event's RFC 6962 inclusion proof in that block's
Merkle tree, and the signed checkpoint of that block.  This checks, in order:

1. the checkpoint is signed by the key you trust (``--public-key``, from
   ``GET /v1/audit/public-key`` saved once, or ``--fingerprint``);
2. the block header hashes to its block hash, carries a valid signature by
   the same key, and agrees with the checkpoint (number, hash, root, last seq);
3. the event, re-serialised canonically, is the leaf at its sequence number's
   index, and the inclusion proof leads from it to the signed Merkle root
   (RFC 9162 section 2.1.3.2);
4. the event is the request the receipt names.

Exit status 0 when the receipt verifies, 1 when it does not, 2 when it cannot
be read.  Django-free: it imports only this package's pure modules and
``cryptography``.  Keep the receipt: later, ``verify_audit --checkpoint`` (by an
auditor) or a comparison with ``GET /v1/audit/checkpoints/{number}`` shows
whether the trail still holds what the gateway decided for you.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.blocks import (
    BLOCK_HEADER_FIELDS,
    SeqLayout,
    header_bytes,
    header_hash,
    load_public_key,
    public_key_fingerprint,
    verify_signature,
)
from audit.canonical import CanonicalFormError, canonical_bytes, record_from_json
from audit.checkpoints import document_problem
from audit.merkle import leaf_hash, verify_inclusion

RECEIPT_KIND = "maas-audit-receipt"
RECEIPT_VERSION = 1


@dataclass
class ReceiptVerification:
    """The outcome of verifying one receipt."""

    ok: bool = True
    request_id: str = ""
    block: int | None = None
    seq: int | None = None
    key_id: str = ""
    problems: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        """Record a problem."""
        self.ok = False
        self.problems.append(message)


def _trusted_keys(public_key_pem: str | bytes | None, fingerprint: str | None) -> tuple[dict[str, Any], str | None]:
    if public_key_pem:
        key = load_public_key(public_key_pem)
        key_id = public_key_fingerprint(key)
        if fingerprint and fingerprint.lower().removeprefix("sha256:") != key_id:
            return {}, f"the public key's fingerprint is {key_id}, not {fingerprint}"
        return {key_id: key}, None
    return {}, "no trusted public key given: a receipt is only as good as the key you check it with"


def verify_receipt(
    receipt: Mapping[str, Any], *, public_key_pem: str | bytes | None, fingerprint: str | None = None
) -> ReceiptVerification:
    """Verify ``receipt`` against the trusted public key; never touches the network or a database."""
    report = ReceiptVerification()
    keys, problem = _trusted_keys(public_key_pem, fingerprint)
    if problem:
        report.fail(problem)
        return report
    if not isinstance(receipt, Mapping) or receipt.get("kind") != RECEIPT_KIND:
        report.fail("not an audit receipt")
        return report
    report.request_id = str(receipt.get("request_id", ""))
    checkpoint = receipt.get("checkpoint")
    problem = document_problem(checkpoint, keys)
    if problem is not None:
        report.fail(f"checkpoint: {problem}")
        return report
    assert isinstance(checkpoint, dict)
    report.key_id = checkpoint["key_id"]
    block = receipt.get("block") or {}
    header = block.get("header") if isinstance(block, Mapping) else None
    if not isinstance(header, Mapping) or set(header) != set(BLOCK_HEADER_FIELDS):
        report.fail("block: not a sealed block header")
        return report
    report.block = header["number"]
    if header_hash(header) != block.get("block_hash"):
        report.fail(f"block {header['number']}: header does not hash to its block hash (altered)")
    key = keys.get(header["key_id"])
    if key is None:
        report.fail(f"block {header['number']}: signed by key {header['key_id']}, not the trusted key")
    elif not verify_signature(key, header_bytes(header), str(block.get("signature", ""))):
        report.fail(f"block {header['number']}: signature does not verify")
    expected = (checkpoint["number"], checkpoint["block_hash"], checkpoint["merkle_root"], checkpoint["last_seq"])
    if (header["number"], block.get("block_hash"), header["merkle_root"], header["last_seq"]) != expected:
        report.fail(f"block {header['number']}: does not match the signed checkpoint of block {checkpoint['number']}")
    _check_event(receipt, header, report)
    return report


def _check_event(receipt: Mapping[str, Any], header: Mapping[str, Any], report: ReceiptVerification) -> None:
    inclusion = receipt.get("inclusion")
    if not isinstance(inclusion, Mapping):
        report.fail("inclusion: missing")
        return
    try:
        record = record_from_json(receipt.get("event") or {}, version=int(header["v"]))
        leaf = leaf_hash(canonical_bytes(record))
        proof = [bytes.fromhex(item) for item in inclusion.get("proof", [])]
        root = bytes.fromhex(header["merkle_root"])
    except (CanonicalFormError, KeyError, TypeError, ValueError) as exc:
        report.fail(f"event: unreadable: {exc}")
        return
    report.seq = record["seq"]
    layout = SeqLayout(header["first_seq"], header["last_seq"], header["gaps"])
    index = layout.index(record["seq"]) if isinstance(record["seq"], int) else None
    if index is None or index != inclusion.get("leaf_index") or inclusion.get("tree_size") != header["count"]:
        report.fail(f"event seq {record['seq']}: not at the receipt's leaf of block {header['number']}")
        return
    if not verify_inclusion(leaf=leaf, index=index, size=header["count"], proof=proof, root=root):
        report.fail(
            f"event seq {record['seq']}: does not lead to block {header['number']}'s signed Merkle root "
            "(the event or the proof was altered)"
        )
    if record.get("request_id") != report.request_id:
        report.fail(f"event seq {record['seq']}: belongs to request {record.get('request_id')!r}, not this receipt's")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m audit.verify_receipt", description=__doc__.split("\n")[0])
    parser.add_argument("receipt", type=Path, help="the receipt JSON (GET /v1/audit/receipts/{request_id})")
    parser.add_argument("--public-key", type=Path, help="PEM file of the gateway's audit public key you trust")
    parser.add_argument("--fingerprint", help="key id you trust (also checked against --public-key)")
    args = parser.parse_args(argv)
    try:
        receipt = json.loads(args.receipt.read_text(encoding="utf-8"))
        pem = args.public_key.read_text() if args.public_key else None
        report = verify_receipt(receipt, public_key_pem=pem, fingerprint=args.fingerprint)
    except (OSError, ValueError) as exc:
        print(f"cannot verify: {exc}", file=sys.stderr)
        return 2
    if report.ok:
        print(
            f"OK: request {report.request_id} (seq {report.seq}) is in sealed block {report.block}, "
            f"checkpoint signed by {report.key_id}"
        )
        return 0
    for problem in report.problems:
        print(f"FAILED: {problem}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
