"""Sealing: bounded, chained, signed blocks over events in sequence order, gaps recorded, never racing."""

from __future__ import annotations

import io
import itertools
import threading
import uuid

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction

from audit.blocks import header_bytes, header_hash, load_public_key, verify_signature
from audit.canonical import canonical_bytes, canonical_event
from audit.merkle import leaf_hash, merkle_root
from audit.models import AuditEvent, SealedBlock, SealState
from audit.selectors import audit_public_key_info, audit_unsealed_count
from audit.services import audit_event_record, audit_seal, audit_verify
from audit.services import sealing as sealing_module
from core.health import readiness_report

from .conftest import BLOCK_SIZE
from .factories import AuditEventFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_events_are_sealed_in_bounded_chained_signed_blocks(events):
    result = audit_seal()
    blocks = list(SealedBlock.objects.order_by("number"))
    assert result.blocks == [b.number for b in blocks] == [1, 2, 3]
    assert [b.count for b in blocks] == [BLOCK_SIZE, BLOCK_SIZE, 2]
    assert result.events == len(events)
    public_key = load_public_key(audit_public_key_info()["public_key_pem"])
    previous = "0" * 64
    for block in blocks:
        header = block.header()
        assert block.prev_block_hash == previous
        assert header_hash(header) == block.block_hash
        assert verify_signature(public_key, header_bytes(header), block.signature)
        rows = AuditEvent.objects.filter(seq__gte=block.first_seq, seq__lte=block.last_seq).order_by("seq")
        leaves = [leaf_hash(canonical_bytes(canonical_event({f: getattr(r, f) for f in _fields()}))) for r in rows]
        assert bytes(block.leaf_hashes) == b"".join(leaves)
        assert merkle_root(leaves).hex() == block.merkle_root
        assert bytes(block.event_ids) == b"".join(r.event_id.bytes for r in rows)
        previous = block.block_hash
    assert blocks[0].first_seq <= events[0].seq and blocks[-1].last_seq == events[-1].seq
    for earlier, later in itertools.pairwise(blocks):
        assert later.first_seq == earlier.last_seq + 1
    state = SealState.objects.get(pk=1)
    assert (state.head_number, state.head_hash, state.head_last_seq) == (3, blocks[-1].block_hash, events[-1].seq)


def _fields():
    return [f.name for f in AuditEvent._meta.concrete_fields]


def test_sealing_again_seals_only_new_events(sealed):
    assert audit_seal().blocks == []
    AuditEventFactory()
    result = audit_seal()
    assert result.blocks == [4] and result.events == 1
    assert audit_verify().ok


def test_max_blocks_bounds_one_run(events):
    assert audit_seal(max_blocks=1).blocks == [1]
    assert audit_unsealed_count() == len(events) - BLOCK_SIZE


def test_events_younger_than_the_lag_wait(settings, events):
    settings.AUDIT_SEAL_LAG_SECONDS = 3600
    assert audit_seal().blocks == []
    assert audit_unsealed_count() == len(events)


def test_gap_in_sequence_is_sealed_over_and_recorded(events):
    last = events[-1].seq
    late = AuditEventFactory(seq=last + 4)  # seqs last+1..last+3 were never committed
    audit_seal()
    block = SealedBlock.objects.get(last_seq=late.seq)
    assert [last + 1, last + 3] in block.gaps
    assert block.count == (block.last_seq - block.first_seq + 1) - sum(b - a + 1 for a, b in block.gaps)
    report = audit_verify()
    assert report.ok, report.problems
    assert report.gap_seqs >= 3


@pytest.mark.skipif(not settings.DATABASE_IS_POSTGRES, reason="SQLite reuses a rolled-back rowid")
def test_rolled_back_insert_leaves_a_legitimate_gap(events):
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        lost = audit_event_record(event_type=AuditEvent.Type.REQUEST, http_status=200)
        raise Abort
    after = AuditEventFactory()
    audit_seal()
    block = SealedBlock.objects.get(last_seq=after.seq)
    assert any(a <= lost.seq <= b for a, b in block.gaps)
    assert audit_verify().ok


def test_a_sealer_that_lost_the_race_starts_over(events, monkeypatch):
    stale = sealing_module._head_snapshot()
    audit_seal(max_blocks=1)  # another sealer got block 1 in first
    monkeypatch.setattr(sealing_module, "_head_snapshot", lambda: stale)
    assert sealing_module._seal_next_block(block_size=BLOCK_SIZE, horizon=events[-1].seq) is False
    monkeypatch.undo()
    assert audit_seal().blocks == [2, 3]
    assert SealedBlock.objects.count() == 3
    assert audit_verify().ok


def test_lost_seal_state_is_rebuilt_from_the_chain(sealed):
    SealState.objects.all().delete()  # bookkeeping, not evidence
    AuditEventFactory()
    assert audit_seal().blocks == [4]
    assert audit_verify().ok


def test_event_ids_in_a_block_are_the_sealed_events(sealed):
    block = SealedBlock.objects.get(number=1)
    raw = bytes(block.event_ids)
    ids = [uuid.UUID(bytes=raw[i : i + 16]) for i in range(0, len(raw), 16)]
    assert ids == [e.event_id for e in sealed[:BLOCK_SIZE]]


@pytest.mark.skipif(not settings.DATABASE_IS_POSTGRES, reason="SQLite serialises all writers anyway")
@pytest.mark.django_db(transaction=True)
def test_a_sealer_holding_its_lock_does_not_block_request_inserts():
    AuditEventFactory()
    holding = threading.Event()
    release = threading.Event()

    def sealer_holding_lock():
        try:
            with transaction.atomic():
                sealing_module.seal_state_locked()
                holding.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=sealer_holding_lock)
    thread.start()
    try:
        assert holding.wait(30)
        inserted: list[int] = []

        def request():
            try:
                inserted.append(audit_event_record(event_type=AuditEvent.Type.REQUEST, http_status=200).seq)
            finally:
                connection.close()

        worker = threading.Thread(target=request)
        worker.start()
        worker.join(30)
        assert inserted, "a request's audit insert waited for the sealer's lock"
    finally:
        release.set()
        thread.join(30)


def test_seal_command_reports_what_it_did(events):
    out = io.StringIO()
    call_command("seal_audit", "--max-blocks", "2", stdout=out)
    assert "Sealed 2 block(s) 1-2: 10 events" in out.getvalue()
    call_command("seal_audit", stdout=out)
    call_command("seal_audit", stdout=out)
    assert "Nothing to seal" in out.getvalue()


def test_readiness_reports_the_signing_key_and_seal_head(sealed):
    _, results = readiness_report()
    assert results["audit"]["status"] == "ok"
    assert results["audit"]["sealed_through"] == sealed[-1].seq
