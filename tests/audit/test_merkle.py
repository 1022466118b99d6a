"""RFC 6962 hashing: the published Certificate Transparency vectors, proofs, and the recursive definition."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit import merkle

# Inputs and roots from the RFC 6962 reference implementation's test suite.
CT_INPUTS = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_LEAVES = [merkle.leaf_hash(data) for data in CT_INPUTS]


def _reference_root(leaves: list[bytes]) -> bytes:
    """MTH exactly as RFC 6962 section 2.1 defines it (recursive, largest power of two < n)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return merkle.node_hash(_reference_root(leaves[:k]), _reference_root(leaves[k:]))


@pytest.mark.parametrize("size", range(len(CT_ROOTS)))
def test_roots_match_rfc6962_reference_vectors(size):
    assert merkle.merkle_root(CT_LEAVES[:size]).hex() == CT_ROOTS[size]


def test_leaf_and_node_hashes_use_distinct_prefixes():
    data = b"x" * 64
    assert merkle.leaf_hash(data) == hashlib.sha256(b"\x00" + data).digest()
    assert merkle.node_hash(data[:32], data[32:]) == hashlib.sha256(b"\x01" + data).digest()
    assert merkle.leaf_hash(data) != merkle.node_hash(data[:32], data[32:])


@pytest.mark.parametrize(
    ("index", "size", "proof"),
    [
        (
            0,
            8,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            [
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    ],
)
def test_inclusion_proofs_match_rfc6962_reference_vectors(index, size, proof):
    levels = merkle.tree_levels(CT_LEAVES[:size])
    assert [h.hex() for h in merkle.inclusion_proof(levels, index)] == proof
    root = bytes.fromhex(CT_ROOTS[size])
    assert merkle.verify_inclusion(
        leaf=CT_LEAVES[index], index=index, size=size, proof=[bytes.fromhex(p) for p in proof], root=root
    )


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70))
def test_iterative_root_equals_the_recursive_definition(items):
    leaves = [merkle.leaf_hash(item) for item in items]
    assert merkle.merkle_root(leaves) == _reference_root(leaves)
    assert merkle.tree_levels(leaves)[-1] == [merkle.merkle_root(leaves)]


@given(st.integers(min_value=1, max_value=40), st.data())
def test_every_proof_verifies_and_a_tampered_one_does_not(size, data):
    leaves = [merkle.leaf_hash(i.to_bytes(2, "big")) for i in range(size)]
    levels = merkle.tree_levels(leaves)
    root = merkle.merkle_root(leaves)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = merkle.inclusion_proof(levels, index)
    assert merkle.verify_inclusion(leaf=leaves[index], index=index, size=size, proof=proof, root=root)
    assert not merkle.verify_inclusion(leaf=merkle.leaf_hash(b"other"), index=index, size=size, proof=proof, root=root)
    if size > 1:
        wrong = (index + 1) % size
        assert not merkle.verify_inclusion(leaf=leaves[index], index=wrong, size=size, proof=proof, root=root)
    if proof:
        bent = [bytes(32), *proof[1:]]
        assert not merkle.verify_inclusion(leaf=leaves[index], index=index, size=size, proof=bent, root=root)


def test_proof_index_outside_tree_is_rejected():
    levels = merkle.tree_levels(CT_LEAVES[:3])
    with pytest.raises(IndexError):
        merkle.inclusion_proof(levels, 3)
    assert not merkle.verify_inclusion(leaf=CT_LEAVES[0], index=3, size=3, proof=[], root=bytes(32))
