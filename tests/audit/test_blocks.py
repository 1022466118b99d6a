"""Block layout helpers: sequence gaps, leaf indexes and header hashing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from audit.blocks import SeqLayout, gaps_of, header_bytes, header_hash


def test_gaps_of_lists_missing_ranges():
    assert gaps_of(10, [10, 11, 14, 15, 20]) == [[12, 13], [16, 19]]
    assert gaps_of(10, [12]) == [[10, 11]]
    assert gaps_of(1, [1, 2, 3]) == []


@given(st.sets(st.integers(min_value=1, max_value=200), min_size=1))
def test_layout_indexes_are_dense_and_invertible(present):
    seqs = sorted(present)
    layout = SeqLayout(1, seqs[-1], gaps_of(1, seqs))
    assert layout.is_valid()
    assert layout.count == len(seqs)
    assert list(layout.seqs()) == seqs
    for index, seq in enumerate(seqs):
        assert layout.index(seq) == index
        assert layout.seq_at(index) == seq
    for seq in set(range(1, seqs[-1] + 1)) - present:
        assert layout.in_gap(seq)
        assert layout.index(seq) is None


def test_invalid_layouts_are_detected():
    assert not SeqLayout(1, 10, [[5, 3]]).is_valid()
    assert not SeqLayout(1, 10, [[4, 6], [5, 7]]).is_valid()
    assert not SeqLayout(1, 10, [[8, 12]]).is_valid()
    assert not SeqLayout(1, 3, [[1, 3]]).is_valid()


def test_header_bytes_ignore_member_order():
    a = {"number": 1, "merkle_root": "ab", "gaps": []}
    b = {"gaps": [], "merkle_root": "ab", "number": 1}
    assert header_bytes(a) == header_bytes(b) == b'{"gaps":[],"merkle_root":"ab","number":1}'
    assert header_hash(a) == header_hash(b)
