"""Incremental verify_audit: bounded by the blocks sealed since the last recorded pass, and still catches tampering.

The recorded "verified through" state (in the ``audit.verify`` event of a
passing run) is only trusted when it verifies; everything else means a full pass.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent, SealedBlock
from audit.schedule import audit_beat_schedule
from audit.services import audit_seal, audit_verify
from audit.services.oversight import audit_verification_record, audit_verification_run
from audit.services.verification import (
    ALTERED,
    CHAIN,
    FULL,
    INCREMENTAL,
    INSERTED,
    MISSING,
    MISSING_BLOCK,
    VERIFY_ACTION,
    verified_through_sign,
)
from audit.tasks import audit_verify_task

from .conftest import raw_delete, raw_update, tampering
from .factories import AuditEventFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _run_verify(*args: str) -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + err.getvalue() + str(exc)
    return 0, out.getvalue()


def _verification_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=VERIFY_ACTION).order_by("seq"))


@pytest.fixture
def verified(sealed) -> AuditEvent:
    """Blocks 1-3 verified by a full pass whose outcome (verified through block 3) is recorded."""
    event = audit_verification_run(actor="staff:olga")
    assert event.detail["ok"] and event.detail["mode"] == FULL
    assert event.detail["verified_through"]["block"] == 3
    return event


@pytest.fixture
def grown(verified) -> list[AuditEvent]:
    """After the recorded pass: nine more events, sealed with the verification event into blocks 4 and 5."""
    new = [AuditEventFactory(detail={"new": i}) for i in range(9)]
    assert audit_seal().blocks == [4, 5]
    return new


def _block_of(seq: int) -> int:
    return SealedBlock.objects.get(first_seq__lte=seq, last_seq__gte=seq).number


def test_the_first_run_is_full_and_records_where_it_stopped(sealed):
    code, output = _run_verify()
    assert code == 0, output
    assert "Full pass (no passing verification is recorded)" in output
    event = _verification_events()[-1]
    state = event.detail["verified_through"]
    block = SealedBlock.objects.get(number=3)
    assert (state["block"], state["block_hash"], state["last_seq"]) == (3, block.block_hash, block.last_seq)
    assert state["signature"] and state["key_id"] == block.key_id


def test_the_next_run_verifies_only_new_blocks(grown, verified):
    report = audit_verify()
    assert report.ok, report.problems
    assert (report.mode, report.from_block, report.anchor_seq) == (INCREMENTAL, 4, verified.seq)
    assert report.blocks_verified == 2 and report.events_verified == len(grown) + 1
    assert report.verified_through["block"] == 5
    # The blind spot is stated, not hidden: an old edit needs the full pass.
    raw_update(verified.seq - 1, http_status=299)
    assert audit_verify().ok
    full = audit_verify(full=True)
    assert full.mode == FULL and full.fallback == "asked for"
    assert full.first_problem.kind == ALTERED and full.blocks_verified == 5


def test_nothing_new_sealed_is_a_cheap_pass(verified):
    report = audit_verify()
    assert report.ok and report.mode == INCREMENTAL and report.blocks_verified == 0
    assert report.verified_through["block"] == 3  # the anchor is carried forward


def test_incremental_detects_an_edit_in_a_new_block(grown):
    victim = grown[4]
    raw_update(victim.seq, detail={"new": "edited"})
    report = audit_verify()
    assert report.mode == INCREMENTAL and not report.ok
    first = report.first_problem
    assert (first.kind, first.seq, first.block) == (ALTERED, victim.seq, _block_of(victim.seq))
    assert report.verified_through is None


def test_incremental_detects_a_deleted_event(grown):
    victim = grown[7]
    raw_delete(victim.seq)
    first = audit_verify().first_problem
    assert (first.kind, first.seq, first.event_id) == (MISSING, victim.seq, str(victim.event_id))


def test_incremental_detects_an_inserted_event(grown):
    head = SealedBlock.objects.get(number=5)
    gap_seq = head.last_seq + 2
    AuditEventFactory(seq=gap_seq)
    audit_seal()  # block 6 records the gap at head.last_seq + 1
    intruder = AuditEventFactory(seq=head.last_seq + 1)
    report = audit_verify()
    assert report.mode == INCREMENTAL
    assert (report.first_problem.kind, report.first_problem.seq) == (INSERTED, intruder.seq)


def test_incremental_detects_a_broken_link_to_the_verified_block(grown):
    with tampering() as cursor:
        cursor.execute("UPDATE audit_sealedblock SET prev_block_hash = %s WHERE number = 4", ["f" * 64])
    report = audit_verify(checkpoints=False)
    assert report.mode == INCREMENTAL
    assert any(p.kind == CHAIN and p.block == 4 for p in report.problems)


def test_a_deleted_first_new_block_is_missing(grown):
    with tampering() as cursor:
        cursor.execute("DELETE FROM audit_sealedblock WHERE number = 4")
    report = audit_verify()
    assert report.mode == INCREMENTAL
    assert (report.first_problem.kind, report.first_problem.block) == (MISSING_BLOCK, 4)


def test_a_changed_verified_block_is_reported_and_forces_a_full_pass(grown):
    with tampering() as cursor:
        cursor.execute("UPDATE audit_sealedblock SET merkle_root = %s WHERE number = 3", ["0" * 64])
    report = audit_verify()
    assert report.mode == FULL and "block verified last (3) changed" in report.fallback
    assert report.first_problem.kind == CHAIN and report.first_problem.block == 3
    assert "differs from the state recorded as verified" in report.first_problem.message


def test_a_deleted_verification_record_is_not_trusted(grown, verified):
    raw_delete(verified.seq)
    report = audit_verify()
    assert report.mode == FULL and report.fallback == "no passing verification is recorded"
    # It was sealed in block 4: the full pass names the deletion.
    first = report.first_problem
    assert (first.kind, first.seq, first.block) == (MISSING, verified.seq, 4)


def test_a_deleted_unsealed_verification_record_means_a_full_pass(verified):
    raw_delete(verified.seq)
    report = audit_verify()
    assert report.mode == FULL and report.ok and report.blocks_verified == 3


def test_an_altered_verification_record_is_not_trusted(grown, verified):
    detail = dict(verified.detail)
    detail["verified_through"] = {**detail["verified_through"], "block": 5}  # skip the new blocks
    raw_update(verified.seq, detail=detail)
    report = audit_verify()
    assert report.mode == FULL and "does not verify (altered)" in report.fallback
    assert report.first_problem.kind == ALTERED and report.first_problem.seq == verified.seq


def test_a_record_without_a_state_or_a_failed_one_is_not_an_anchor(sealed):
    from audit.services.recording import audit_event_record

    audit_event_record(event_type=AuditEvent.Type.VERIFY, action=VERIFY_ACTION, detail={"ok": True})
    report = audit_verify()
    assert report.mode == FULL and "no verified-through state" in report.fallback
    audit_event_record(event_type=AuditEvent.Type.VERIFY, action=VERIFY_ACTION, detail={"ok": False})
    assert audit_verify().mode == FULL


def test_a_signed_claim_beyond_its_own_event_is_not_trusted(sealed):
    """A replayed or forged-in-order record cannot claim blocks sealed after it was written."""
    from audit.services.recording import audit_event_record

    head = SealedBlock.objects.get(number=3)
    future = verified_through_sign(block=9, block_hash=head.block_hash, last_seq=head.last_seq + 1000)
    audit_event_record(
        event_type=AuditEvent.Type.VERIFY, action=VERIFY_ACTION, detail={"ok": True, "verified_through": future}
    )
    report = audit_verify()
    assert report.mode == FULL and "beyond its own event" in report.fallback


def test_a_failing_run_records_no_anchor_and_the_next_starts_where_the_last_pass_did(grown, verified):
    raw_update(grown[0].seq, http_status=299)
    failed = audit_verification_run(actor="system:audit.verify")
    assert failed.detail["ok"] is False and "verified_through" not in failed.detail
    again = audit_verify()
    assert again.mode == INCREMENTAL and again.anchor_seq == verified.seq and not again.ok


def test_since_passes_record_nothing_and_do_not_anchor(sealed):
    recent = SealedBlock.objects.get(number=3).last_occurred_at
    code, _ = _run_verify("--since", recent.isoformat())
    assert code == 0 and _verification_events() == []


def test_command_full_and_json(grown):
    code, output = _run_verify("--json")
    assert code == 0 and '"mode": "incremental"' in output and '"from_block": 4' in output
    code, output = _run_verify("--full", "--json", "--no-record")
    assert code == 0 and '"mode": "full"' in output and '"fallback": "asked for"' in output
    assert _verification_events()[-1].detail["mode"] == INCREMENTAL  # --no-record recorded nothing


def test_command_failure_is_recorded_too(grown):
    raw_delete(grown[2].seq)
    code, output = _run_verify()
    assert code == 1 and "Incremental pass from block 4" in output
    assert _verification_events()[-1].detail["ok"] is False


def test_verification_record_carries_mode(sealed):
    report = audit_verify()
    from django.utils import timezone

    event = audit_verification_record(report=report, actor="staff:olga", started=timezone.now())
    assert event.detail["mode"] == FULL and event.detail["from_block"] == 1


def test_verify_task_modes(celery_eager, verified):
    assert audit_verify_task.delay("system:audit.verify").get()["mode"] == INCREMENTAL
    assert audit_verify_task.delay("system:audit.verify", full=True).get()["mode"] == FULL


def test_beat_runs_daily_incremental_and_weekly_full():
    schedule = audit_beat_schedule(seal_interval_seconds=60)
    assert schedule["audit-verify"]["task"] == audit_verify_task.name == "audit.verify"
    assert "kwargs" not in schedule["audit-verify"]
    assert schedule["audit-verify-full"]["kwargs"] == {"full": True}


def test_deleting_the_newest_record_falls_back_to_the_one_before_and_is_caught(grown, verified):
    newer = audit_verification_run(actor="system:audit.verify")
    assert newer.detail["verified_through"]["block"] == 5
    AuditEventFactory()
    audit_seal()  # seals the newer record into block 6
    raw_delete(newer.seq)
    report = audit_verify()
    assert report.mode == INCREMENTAL and report.anchor_seq == verified.seq and report.from_block == 4
    first = report.first_problem
    assert (first.kind, first.seq, first.block) == (MISSING, newer.seq, 6)
