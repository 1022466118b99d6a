"""Sealed-block and tombstone formats: headers, hashes, signatures, sequence layout.

Django-free (hashlib and ``cryptography`` only), shared by the sealer, the
database verifier and the offline export verifier.

A block header is a small JSON object (see :data:`BLOCK_HEADER_FIELDS`); its
canonical bytes are what gets signed with Ed25519, and their SHA-256 is the
block hash that the next block names as ``prev_block_hash``: CloudTrail's
signed digest chain, with a Certificate Transparency Merkle root inside.

``gaps`` lists sequence ranges inside ``[first_seq, last_seq]`` that held no
event when the block was sealed: PostgreSQL sequences skip values when a
transaction rolls back, so a gap at insert time is legitimate.  Because the
gaps are signed, a verifier can tell such a gap (listed) from a deleted event
(a signed leaf whose row is gone).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.canonical import canonical_json

GENESIS_HASH = "0" * 64
SIGNATURE_ALGORITHM = "Ed25519"

BLOCK_HEADER_FIELDS: tuple[str, ...] = (
    "kind",
    "v",
    "number",
    "first_seq",
    "last_seq",
    "count",
    "gaps",
    "first_occurred_at",
    "last_occurred_at",
    "merkle_root",
    "prev_block_hash",
    "sealed_at",
    "key_id",
)

TOMBSTONE_HEADER_FIELDS: tuple[str, ...] = (
    "kind",
    "v",
    "first_block",
    "last_block",
    "first_seq",
    "last_seq",
    "block_count",
    "event_count",
    "removed_root",
    "prev_block_hash",
    "last_block_hash",
    "tenants",
    "reason",
    "actor",
    "purged_at",
    "key_id",
)


def header_bytes(header: Mapping[str, Any]) -> bytes:
    """The exact bytes that are hashed and signed for a block or tombstone header."""
    return canonical_json(dict(header)).encode("ascii")


def header_hash(header: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the header bytes: the block hash (or tombstone hash)."""
    return hashlib.sha256(header_bytes(header)).hexdigest()


def public_key_fingerprint(public_key: Ed25519PublicKey) -> str:
    """Key id: hex SHA-256 of the raw 32-byte Ed25519 public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """Parse a PEM public key and insist that it is Ed25519."""
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("audit public keys are Ed25519")
    return key


def verify_signature(public_key: Ed25519PublicKey, message: bytes, signature_hex: str) -> bool:
    """True when ``signature_hex`` is a valid Ed25519 signature of ``message``."""
    try:
        public_key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


class SeqLayout:
    """Which sequence numbers a block covers, and each one's leaf index."""

    def __init__(self, first_seq: int, last_seq: int, gaps: Sequence[Sequence[int]]):
        self.first_seq = first_seq
        self.last_seq = last_seq
        self.gaps = [(int(a), int(b)) for a, b in gaps]
        self._starts = [a for a, _ in self.gaps]
        # Seqs skipped before each gap ends, for O(log g) index lookups.
        self._skipped_through: list[int] = []
        total = 0
        for a, b in self.gaps:
            total += b - a + 1
            self._skipped_through.append(total)
        self.count = (last_seq - first_seq + 1) - total

    def is_valid(self) -> bool:
        """Gaps are sorted, disjoint, inside the range, and leave at least one seq."""
        previous_end = self.first_seq - 1
        for a, b in self.gaps:
            if a > b or a <= previous_end or b > self.last_seq:
                return False
            previous_end = b
        return self.first_seq <= self.last_seq and self.count >= 1

    def in_gap(self, seq: int) -> bool:
        """True when ``seq`` lies in a listed gap (no event was sealed there)."""
        i = bisect.bisect_right(self._starts, seq) - 1
        return i >= 0 and self.gaps[i][0] <= seq <= self.gaps[i][1]

    def index(self, seq: int) -> int | None:
        """Leaf index of ``seq``, or ``None`` when outside the block or in a gap."""
        if seq < self.first_seq or seq > self.last_seq or self.in_gap(seq):
            return None
        i = bisect.bisect_right(self._starts, seq) - 1
        skipped = self._skipped_through[i] if i >= 0 else 0
        return seq - self.first_seq - skipped

    def seq_at(self, index: int) -> int:
        """Sequence number of leaf ``index`` (inverse of :meth:`index`)."""
        if not 0 <= index < self.count:
            raise IndexError(f"leaf {index} outside a block of {self.count}")
        seq = self.first_seq + index
        for a, b in self.gaps:
            if seq < a:
                break
            seq += b - a + 1
        return seq

    def seqs(self) -> Iterator[int]:
        """Every covered sequence number, in order."""
        current = self.first_seq
        for a, b in self.gaps:
            yield from range(current, a)
            current = b + 1
        yield from range(current, self.last_seq + 1)


def gaps_of(first_seq: int, seqs: Sequence[int] | Iterator[int]) -> list[list[int]]:
    """Gap ranges between ``first_seq`` and the ascending ``seqs`` that follow it."""
    gaps: list[list[int]] = []
    expected = first_seq
    for seq in seqs:
        if seq > expected:
            gaps.append([expected, seq - 1])
        expected = seq + 1
    return gaps
