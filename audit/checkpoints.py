"""Signed checkpoints and the append-only checkpoint log kept outside the database.

Django-free (``cryptography`` and the standard library only), shared by the
sealer, ``verify_audit``, the public API and the offline verifiers.

A *checkpoint* is a small signed statement about one sealed block: its number,
last sequence number, block hash, Merkle root, time and the signing key's id and
fingerprint -- a signed tree head in Certificate Transparency's words (RFC 6962
section 3.5, RFC 9162 section 4.10), a digest file in CloudTrail's.  Because a
checkpoint leaves the database the moment its block is sealed, someone who later
rewrites the database (and lets the sealer re-sign the forgery) cannot make the
checkpoints others kept agree with it.

A *chain-start record* opens an *epoch*: the first one is written when an empty
trail is sealed for the first time; every later one is an explicit, signed
operator decision with a reason (``manage.py audit_chain_start``), naming the
database head it continues from and the newest checkpoint it leaves behind.

Layout of a log (one directory, any number of copies)::

    epoch-0001/chain-start.json
    epoch-0001/000000000001.json            checkpoint of block 1
    epoch-0001/000000000001.witness-<w>.json  a witness's countersignature
    epoch-0002/chain-start.json             after an explicit restart

Files are created exclusively (written to a temporary name, fsync'd, then
hard-linked to their final name, which fails if it exists) and never
rewritten; the directory is fsync'd after each link.  Writing identical bytes
again is a no-op (checkpoints are deterministic: Ed25519 signatures are, and
the time is the block's ``sealed_at``), writing different bytes under an
existing name is a :class:`CheckpointConflict`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from audit.blocks import public_key_fingerprint, verify_signature
from audit.canonical import canonical_json

CHECKPOINT_KIND = "maas-audit-checkpoint"
CHAIN_START_KIND = "maas-audit-chain-start"
CHECKPOINT_VERSION = 1

CHECKPOINT_FIELDS: tuple[str, ...] = (
    "kind",
    "v",
    "epoch",
    "number",
    "last_seq",
    "block_hash",
    "merkle_root",
    "sealed_at",
    "key_id",
    "key_fingerprint",
)
CHAIN_START_FIELDS: tuple[str, ...] = (
    "kind",
    "v",
    "epoch",
    "after_block",
    "after_hash",
    "after_last_seq",
    "previous",
    "reason",
    "actor",
    "started_at",
    "key_id",
    "key_fingerprint",
)

_EPOCH_DIR = re.compile(r"^epoch-(\d{4,})$")
_CHECKPOINT_FILE = re.compile(r"^(\d{12})\.json$")
CHAIN_START_FILE = "chain-start.json"


class CheckpointConflict(Exception):
    """A checkpoint log already holds different bytes under the same name (history was rewritten)."""


def key_fingerprint(key_id: str) -> str:
    """Human form of a key id, as ``GET /v1/audit/public-key`` prints it."""
    return f"SHA256:{key_id}"


def signed_bytes(document: Mapping[str, Any]) -> bytes:
    """The bytes a checkpoint or chain-start signature covers: the document without ``signature``."""
    body = {name: value for name, value in document.items() if name != "signature"}
    return canonical_json(body).encode("ascii")


def document_bytes(document: Mapping[str, Any]) -> bytes:
    """The exact file content of a signed document (canonical JSON, newline-terminated)."""
    return canonical_json(dict(document)).encode("ascii") + b"\n"


def sign_document(body: Mapping[str, Any], sign: Callable[[bytes], str]) -> dict[str, Any]:
    """``body`` plus the hex signature ``sign`` makes of its canonical bytes."""
    document = dict(body)
    document["signature"] = sign(signed_bytes(document))
    return document


def document_problem(document: Any, keys: Mapping[str, Any], *, kind: str = CHECKPOINT_KIND) -> str | None:
    """Why ``document`` is not a valid signed checkpoint (or chain start) under ``keys``; ``None`` when it is.

    ``keys`` maps key ids to Ed25519 public keys: the ones the caller trusts.
    """
    if not isinstance(document, dict) or document.get("kind") != kind:
        return f"not a {kind} document"
    fields = CHECKPOINT_FIELDS if kind == CHECKPOINT_KIND else CHAIN_START_FIELDS
    if set(document) != {*fields, "signature"}:
        return f"fields {sorted(document)} are not those of a {kind}"
    key_id = document.get("key_id", "")
    key = keys.get(key_id)
    if key is None:
        return f"signed by key {key_id}, which is not trusted here"
    if document.get("key_fingerprint") != key_fingerprint(public_key_fingerprint(key)):
        return "key fingerprint does not match its key id"
    if not verify_signature(key, signed_bytes(document), str(document.get("signature", ""))):
        return "signature does not verify (altered or forged)"
    return None


def load_document(path: Path) -> dict[str, Any]:
    """Parse one signed document file (raises ``ValueError`` on unreadable JSON)."""
    return json.loads(path.read_text(encoding="ascii"))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointLog:
    """One append-only checkpoint directory (the primary log or a copy on another volume)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"CheckpointLog({str(self.root)!r})"

    # -- names ---------------------------------------------------------------
    def epoch_dir(self, epoch: int) -> Path:
        """Directory of one epoch."""
        return self.root / f"epoch-{epoch:04d}"

    def checkpoint_path(self, epoch: int, number: int) -> Path:
        """Path of the checkpoint of block ``number`` in ``epoch``."""
        return self.epoch_dir(epoch) / f"{number:012d}.json"

    def witness_path(self, epoch: int, number: int, witness: str) -> Path:
        """Path of a witness's countersignature of a checkpoint."""
        return self.epoch_dir(epoch) / f"{number:012d}.witness-{witness}.json"

    def chain_start_path(self, epoch: int) -> Path:
        """Path of the record that opened ``epoch``."""
        return self.epoch_dir(epoch) / CHAIN_START_FILE

    # -- reads ---------------------------------------------------------------
    def epochs(self) -> list[int]:
        """Epoch numbers present, ascending (a handful of entries: cheap to list)."""
        if not self.root.is_dir():
            return []
        found = [int(m.group(1)) for entry in os.scandir(self.root) if (m := _EPOCH_DIR.match(entry.name))]
        return sorted(found)

    def numbers(self, epoch: int) -> list[int]:
        """Block numbers with a checkpoint in ``epoch``, ascending (lists the directory)."""
        directory = self.epoch_dir(epoch)
        if not directory.is_dir():
            return []
        found = [int(m.group(1)) for entry in os.scandir(directory) if (m := _CHECKPOINT_FILE.match(entry.name))]
        return sorted(found)

    def has(self, epoch: int, number: int) -> bool:
        """True when block ``number`` has a checkpoint file in ``epoch``."""
        return self.checkpoint_path(epoch, number).exists()

    def get(self, epoch: int, number: int) -> dict[str, Any] | None:
        """The checkpoint of block ``number`` in ``epoch``, or ``None``."""
        path = self.checkpoint_path(epoch, number)
        return load_document(path) if path.exists() else None

    def chain_start(self, epoch: int) -> dict[str, Any] | None:
        """The chain-start record of ``epoch``, or ``None``."""
        path = self.chain_start_path(epoch)
        return load_document(path) if path.exists() else None

    def newest_number(self, epoch: int, *, hint: int | None = None) -> int | None:
        """Newest checkpointed block of ``epoch``.

        With ``hint`` (the database's head) the usual answer costs two
        ``stat`` calls -- the hint exists and the next one does not -- instead
        of listing a directory that grows by one file per block; any other
        shape (a rewound or wiped database) falls back to the listing.
        """
        if hint is not None and hint > 0 and self.has(epoch, hint) and not self.has(epoch, hint + 1):
            return hint
        numbers = self.numbers(epoch)
        return numbers[-1] if numbers else None

    # -- writes --------------------------------------------------------------
    def write(self, path: Path, content: bytes) -> bool:
        """Create ``path`` with ``content`` exclusively and durably; False when identical bytes were there.

        Raises :class:`CheckpointConflict` when the name holds other bytes.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            return self._same(path, content)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            try:
                # link() publishes the complete file atomically and refuses an existing name.
                os.link(tmp, path)
            except FileExistsError:
                return self._same(path, content)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        _fsync_dir(path.parent)
        return True

    @staticmethod
    def _same(path: Path, content: bytes) -> bool:
        if path.read_bytes() != content:
            raise CheckpointConflict(f"{path} already holds a different document; checkpoints are never rewritten")
        return False

    def put(self, document: Mapping[str, Any]) -> bool:
        """Store a signed checkpoint or chain-start record under its name; True when newly written."""
        epoch = int(document["epoch"])
        if document.get("kind") == CHAIN_START_KIND:
            path = self.chain_start_path(epoch)
        else:
            path = self.checkpoint_path(epoch, int(document["number"]))
        return self.write(path, document_bytes(document))
