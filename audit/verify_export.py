"""Verify an audit export offline, without the database: ``python -m audit.verify_export``.

Usage::

    python -m audit.verify_export audit.csv audit.csv.manifest.json --public-key audit-key.pem
    python -m audit.verify_export audit.jsonl audit.jsonl.manifest.json --fingerprint <key id>
    python -m audit.verify_export audit.csv audit.csv.manifest.json --checkpoint saved-checkpoint.json

Exit status 0 when everything verifies, 1 when something does not (each
problem is printed, naming the line, sequence number and event id), 2 when
the files cannot be read.  Django-free: it needs only this package's pure
modules and ``cryptography``, so a regulator can run it on their own machine.

What it checks:

1. the manifest's Ed25519 signature, made with the key you trust -- pinned
   by default: ``--public-key`` (the gateway publishes it at
   ``GET /v1/audit/public-key``), ``--fingerprint``, or ``--checkpoint`` (a
   checkpoint file, or a checkpoint log directory, saved earlier: its key id
   is the pin, and every block of the export that it covers must carry the
   same block hash).  Without a pin the export fails, because a manifest
   carries its own keys and an export re-signed with a fresh key would
   otherwise verify; ``--trust-manifest-key`` opts out explicitly;
2. the SHA-256 of the export file against the manifest;
3. every sealed block listed in the manifest: header hash, signature, and the
   hash chain between consecutive blocks;
4. every row: recomputes its canonical form and RFC 6962 leaf hash; rows of a
   fully exported block must rebuild the block's signed Merkle root exactly
   (so a changed, dropped, added or reordered row fails); rows of a partially
   exported block (filtered exports) must carry an inclusion proof to it;
5. row counts, per block and in total; rows newer than the last seal are
   reported as covered by the manifest signature only.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from collections.abc import Iterator
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
from audit.canonical import (
    CANONICAL_VERSION,
    CanonicalFormError,
    canonical_bytes,
    canonical_json,
    record_from_csv,
    record_from_json,
)
from audit.checkpoints import CheckpointLog, document_problem, load_document
from audit.merkle import leaf_hash, merkle_root, verify_inclusion

MANIFEST_KIND = "maas-audit-export"
MERKLE_COLUMNS = ("merkle_block", "merkle_index", "merkle_proof")
JSONL_MERKLE_MEMBER = "_merkle"
_MAX_PROBLEMS = 50


@dataclass
class ExportVerification:
    """The outcome of verifying one export against its manifest."""

    ok: bool = True
    rows: int = 0
    sealed_rows: int = 0
    unsealed_rows: int = 0
    full_blocks: int = 0
    partial_blocks: int = 0
    key_id: str = ""
    problems: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        """Record a problem (the first ``_MAX_PROBLEMS`` are kept verbatim)."""
        self.ok = False
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(message)
        elif len(self.problems) == _MAX_PROBLEMS:
            self.problems.append("... further problems omitted")


@dataclass
class _Row:
    line: int
    record: dict[str, Any]
    block: int | None
    index: int | None
    proof: list[bytes]


@dataclass
class _BlockState:
    entry: dict[str, Any]
    layout: SeqLayout
    root: bytes
    full: bool
    leaves: list[bytes] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    rows: int = 0
    first_line: int = 0


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _parse_proof(items: Any) -> list[bytes]:
    return [bytes.fromhex(item) for item in items]


def _rows_csv(path: Path, versions: dict[int, int]) -> Iterator[_Row]:
    with path.open("r", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for line, cells in enumerate(reader, start=2):
            block = int(cells["merkle_block"]) if cells.get("merkle_block") else None
            version = versions.get(block, CANONICAL_VERSION) if block is not None else CANONICAL_VERSION
            record = record_from_csv(cells, version=version)
            index = int(cells["merkle_index"]) if cells.get("merkle_index") else None
            proof_text = cells.get("merkle_proof") or ""
            yield _Row(line, record, block, index, _parse_proof(proof_text.split()))


def _rows_jsonl(path: Path, versions: dict[int, int]) -> Iterator[_Row]:
    with path.open("r", encoding="utf-8") as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            obj = json.loads(text)
            merkle = obj.get(JSONL_MERKLE_MEMBER) or {}
            block = merkle.get("block")
            version = versions.get(block, CANONICAL_VERSION) if block is not None else CANONICAL_VERSION
            record = record_from_json(obj, version=version)
            yield _Row(line, record, block, merkle.get("index"), _parse_proof(merkle.get("proof") or []))


def _check_manifest(manifest: dict[str, Any], report: ExportVerification, pins: dict[str, str | None]) -> Any:
    """Signature and trust of the manifest; returns the public keys by id (or None on failure)."""
    if manifest.get("kind") != MANIFEST_KIND:
        report.fail(f"not an audit export manifest (kind={manifest.get('kind')!r})")
        return None
    keys: dict[str, Any] = {}
    for pem in manifest.get("public_keys", {}).values():
        key = load_public_key(pem)
        keys[public_key_fingerprint(key)] = key
    signer_id = manifest.get("key_id", "")
    report.key_id = signer_id
    if signer_id not in keys:
        report.fail(f"manifest signed by key {signer_id!r}, which the manifest does not include")
        return None
    if not (pins["fingerprint"] or pins["public_key"] or pins["checkpoint_key"] or pins["trust_manifest_key"]):
        report.fail(
            "no trusted key pinned: pass --public-key, --fingerprint or --checkpoint (a manifest carries its "
            "own keys, so an export re-signed with a fresh key would otherwise verify)"
        )
    if pins["checkpoint_key"] and pins["checkpoint_key"] != signer_id:
        report.fail(f"manifest signed by key {signer_id}, not key {pins['checkpoint_key']} of the saved checkpoints")
    if pins["fingerprint"] and pins["fingerprint"].lower() != signer_id:
        report.fail(f"manifest signed by key {signer_id}, not the trusted fingerprint {pins['fingerprint']}")
    if pins["public_key"]:
        trusted = public_key_fingerprint(load_public_key(pins["public_key"]))
        if trusted != signer_id:
            report.fail(f"manifest signed by key {signer_id}, not the trusted public key {trusted}")
    body = {k: v for k, v in manifest.items() if k != "signature"}
    if not verify_signature(keys[signer_id], canonical_json(body).encode("ascii"), manifest.get("signature", "")):
        report.fail("manifest signature is invalid: the manifest was altered or not signed by its key")
    return keys


def _check_blocks(manifest: dict[str, Any], keys: dict[str, Any], report: ExportVerification) -> dict[int, _BlockState]:
    blocks: dict[int, _BlockState] = {}
    previous: dict[str, Any] | None = None
    for entry in manifest.get("blocks", []):
        header = entry["header"]
        number = header.get("number")
        if set(header) != set(BLOCK_HEADER_FIELDS):
            report.fail(f"block {number}: header fields {sorted(header)} are not a block header")
            continue
        if header_hash(header) != entry.get("block_hash"):
            report.fail(f"block {number}: header does not hash to its block hash")
        key = keys.get(header["key_id"])
        if key is None:
            report.fail(f"block {number}: signed by key {header['key_id']}, absent from the manifest")
        elif not verify_signature(key, header_bytes(header), entry.get("signature", "")):
            report.fail(f"block {number}: signature is invalid")
        chained = previous is not None and previous["header"]["number"] + 1 == number
        if chained and header["prev_block_hash"] != previous["block_hash"]:
            report.fail(f"block {number}: does not chain to block {number - 1}")
        previous = entry
        layout = SeqLayout(header["first_seq"], header["last_seq"], header["gaps"])
        if not layout.is_valid() or layout.count != header["count"]:
            report.fail(f"block {number}: sequence range and gaps do not add up to its count")
        blocks[number] = _BlockState(
            entry=entry,
            layout=layout,
            root=bytes.fromhex(header["merkle_root"]),
            full=entry.get("coverage") == "full",
        )
    return blocks


def _finish_full_block(number: int, state: _BlockState, report: ExportVerification) -> None:
    expected = list(state.layout.seqs())
    if state.seqs != expected:
        missing = sorted(set(expected) - set(state.seqs))[:5]
        extra = sorted(set(state.seqs) - set(expected))[:5]
        report.fail(
            f"block {number} (fully exported, rows from line {state.first_line}): rows do not match its "
            f"sealed sequence numbers (missing {missing}, unexpected {extra})"
        )
    elif merkle_root(state.leaves) != state.root:
        report.fail(
            f"block {number} (fully exported, lines {state.first_line}-{state.first_line + state.rows - 1}): "
            "rows do not rebuild the signed Merkle root: a row was altered or reordered"
        )
    state.leaves = []


def load_checkpoints(path: Path) -> list[dict[str, Any]]:
    """Checkpoints saved earlier: one checkpoint file, or every checkpoint of a checkpoint log directory."""
    if not path.is_dir():
        return [load_document(path)]
    log = CheckpointLog(path)
    return [load_document(log.checkpoint_path(epoch, n)) for epoch in log.epochs() for n in log.numbers(epoch)]


def _check_checkpoints(
    checkpoints: list[dict[str, Any]], manifest: dict[str, Any], keys: dict[str, Any], report: ExportVerification
) -> None:
    """Each saved checkpoint is validly signed, and every exported block it covers has its block hash."""
    exported = {entry["header"].get("number"): entry for entry in manifest.get("blocks", [])}
    for checkpoint in checkpoints:
        problem = document_problem(checkpoint, keys)
        number = checkpoint.get("number") if isinstance(checkpoint, dict) else None
        if problem is not None:
            report.fail(f"checkpoint of block {number}: {problem}")
            continue
        entry = exported.get(number)
        if entry is not None and entry.get("block_hash") != checkpoint["block_hash"]:
            report.fail(f"block {number}: differs from its checkpoint saved earlier (the trail was re-sealed)")


def verify_export(
    export_path: Path,
    manifest_path: Path,
    *,
    fingerprint: str | None = None,
    public_key_pem: str | None = None,
    checkpoints: list[dict[str, Any]] | None = None,
    trust_manifest_key: bool = False,
) -> ExportVerification:
    """Verify ``export_path`` against ``manifest_path``; never touches a database.

    The signing key must be pinned (``fingerprint``, ``public_key_pem`` or the
    key of ``checkpoints`` saved earlier) unless ``trust_manifest_key``.
    """
    report = ExportVerification()
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    checkpoint_keys = {c.get("key_id") for c in checkpoints or () if isinstance(c, dict)}
    if len(checkpoint_keys) > 1:
        report.fail(f"saved checkpoints name {len(checkpoint_keys)} different keys; pin one with --public-key")
    pins = {
        "fingerprint": fingerprint,
        "public_key": public_key_pem,
        "checkpoint_key": next(iter(checkpoint_keys), None),
        "trust_manifest_key": trust_manifest_key,
    }
    keys = _check_manifest(manifest, report, pins)
    if keys is None:
        return report
    if checkpoints:
        _check_checkpoints(checkpoints, manifest, keys, report)
    actual_sha = _file_sha256(export_path)
    if actual_sha != manifest.get("sha256"):
        report.fail(f"file SHA-256 {actual_sha} differs from the manifest's {manifest.get('sha256')}: file was edited")
    blocks = _check_blocks(manifest, keys, report)
    versions = {number: state.entry["header"]["v"] for number, state in blocks.items()}
    reader = _rows_csv if manifest.get("format") == "csv" else _rows_jsonl
    last_seq = 0
    current: int | None = None
    try:
        for row in reader(export_path, versions):
            report.rows += 1
            seq, event_id = row.record["seq"], row.record["event_id"]
            where = f"line {row.line} (seq {seq}, event {event_id})"
            if seq <= last_seq:
                report.fail(f"{where}: rows are not in ascending sequence order")
            last_seq = max(last_seq, seq)
            if row.block is None:
                report.unsealed_rows += 1
                continue
            state = blocks.get(row.block)
            if state is None:
                report.fail(f"{where}: names block {row.block}, which the manifest does not list")
                continue
            if current is not None and current != row.block and blocks[current].full:
                _finish_full_block(current, blocks[current], report)
            if state.rows == 0:
                state.first_line = row.line
            current = row.block
            state.rows += 1
            report.sealed_rows += 1
            leaf = leaf_hash(canonical_bytes(row.record))
            index = state.layout.index(seq)
            if index is None or index != row.index:
                report.fail(f"{where}: sequence number is not at leaf {row.index} of block {row.block}")
                continue
            if state.full:
                state.leaves.append(leaf)
                state.seqs.append(seq)
            elif not verify_inclusion(
                leaf=leaf, index=index, size=state.layout.count, proof=row.proof, root=state.root
            ):
                report.fail(f"{where}: row does not match its block {row.block}'s signed Merkle root (altered)")
    except (CanonicalFormError, ValueError, KeyError, json.JSONDecodeError, csv.Error) as exc:
        report.fail(f"after row {report.rows}: unreadable row: {exc}")
    if current is not None and blocks[current].full:
        _finish_full_block(current, blocks[current], report)
    for number, state in blocks.items():
        if state.rows != state.entry.get("rows"):
            report.fail(f"block {number}: {state.rows} rows in the file, manifest says {state.entry.get('rows')}")
        if state.full:
            report.full_blocks += 1
        else:
            report.partial_blocks += 1
    if report.rows != manifest.get("row_count"):
        report.fail(f"{report.rows} rows in the file, manifest says {manifest.get('row_count')}")
    if report.unsealed_rows != manifest.get("unsealed_rows", 0):
        report.fail(f"{report.unsealed_rows} unsealed rows, manifest says {manifest.get('unsealed_rows')}")
    for tombstone in manifest.get("purged_ranges", []):
        header = tombstone["header"]
        key = keys.get(header.get("key_id"))
        if header_hash(header) != tombstone.get("tombstone_hash") or key is None:
            report.fail(f"purge tombstone for blocks {header.get('first_block')}-{header.get('last_block')} is altered")
        elif not verify_signature(key, header_bytes(header), tombstone.get("signature", "")):
            report.fail(f"purge tombstone for blocks {header['first_block']}-{header['last_block']}: bad signature")
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m audit.verify_export", description=__doc__.split("\n")[0])
    parser.add_argument("export", type=Path, help="the exported CSV or JSON Lines file")
    parser.add_argument("manifest", type=Path, help="its manifest (EXPORT.manifest.json)")
    parser.add_argument("--fingerprint", help="key id you trust (from GET /v1/audit/public-key)")
    parser.add_argument("--public-key", type=Path, help="PEM file of the public key you trust")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=[],
        help="checkpoint file or checkpoint log directory saved earlier (pins its key; may be repeated)",
    )
    parser.add_argument(
        "--trust-manifest-key",
        action="store_true",
        help="accept whatever key the manifest carries (unsafe: a re-signed export would verify)",
    )
    args = parser.parse_args(argv)
    try:
        pem = args.public_key.read_text() if args.public_key else None
        checkpoints = [document for path in args.checkpoint for document in load_checkpoints(path)]
        report = verify_export(
            args.export,
            args.manifest,
            fingerprint=args.fingerprint,
            public_key_pem=pem,
            checkpoints=checkpoints,
            trust_manifest_key=args.trust_manifest_key,
        )
    except (OSError, ValueError) as exc:
        print(f"cannot verify: {exc}", file=sys.stderr)
        return 2
    print(
        f"rows: {report.rows} ({report.sealed_rows} sealed in {report.full_blocks} full and "
        f"{report.partial_blocks} partial blocks, {report.unsealed_rows} not yet sealed)"
    )
    print(f"signing key: {report.key_id}")
    if report.ok:
        print("OK: export verifies against its signed manifest and sealed blocks")
        return 0
    for problem in report.problems:
        print(f"FAILED: {problem}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
