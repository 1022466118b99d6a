"""RFC 6962 Merkle trees: the hashing that makes sealed audit blocks tamper-evident.

Pure Python (hashlib only, no Django), shared by the sealing service, the
database verifier and the offline export verifier, so that all three compute
byte-for-byte the same roots.  The hashing is Certificate Transparency's
(RFC 6962 section 2.1, restated in RFC 9162 section 2.1):

* leaf hash  ``SHA-256(0x00 || data)``
* node hash  ``SHA-256(0x01 || left || right)``
* a tree of ``n`` leaves splits at the largest power of two smaller than ``n``.

The distinct prefixes stop a second-preimage attack that passes an interior
node off as a leaf.  Building the tree bottom-up and carrying an unpaired last
node up unchanged yields exactly the RFC's split, which lets us compute roots
and inclusion proofs iteratively (no recursion depth, one pass per level).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash of one serialised record."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _next_level(level: Sequence[bytes]) -> list[bytes]:
    paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        # An unpaired last node moves up unchanged: this is the RFC's
        # "largest power of two" split seen from below.
        paired.append(level[-1])
    return paired


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash of already leaf-hashed values (``EMPTY_ROOT`` for none)."""
    if not leaves:
        return EMPTY_ROOT
    level: Sequence[bytes] = leaves
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def tree_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first and root last (for inclusion proofs)."""
    if not leaves:
        return [[EMPTY_ROOT]]
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        levels.append(_next_level(levels[-1]))
    return levels


def inclusion_proof(levels: Sequence[Sequence[bytes]], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` (RFC 6962 PATH), deepest sibling first."""
    size = len(levels[0])
    if not 0 <= index < size:
        raise IndexError(f"leaf {index} outside a tree of {size}")
    path: list[bytes] = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index //= 2
    return path


def verify_inclusion(*, leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Check an audit path against a root (the algorithm of RFC 9162 section 2.1.3.2)."""
    if index < 0 or index >= size:
        return False
    fn, sn = index, size - 1
    result = leaf
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and result == root
