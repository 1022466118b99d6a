"""verify_audit names the exact altered, deleted, inserted or reordered event, and the block."""

from __future__ import annotations

import uuid

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent, SealedBlock
from audit.services import audit_seal, audit_verify
from audit.services.verification import (
    ALTERED,
    BLOCK,
    CHAIN,
    CHECKPOINT,
    INSERTED,
    MISSING,
    MISSING_BLOCK,
    REORDERED,
)

from .conftest import raw_delete, raw_update, tampering
from .factories import AuditEventFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _block_of(seq: int) -> int:
    return SealedBlock.objects.get(first_seq__lte=seq, last_seq__gte=seq).number


def _run_verify(*args: str) -> tuple[int, str]:
    from io import StringIO

    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + err.getvalue() + str(exc)
    return 0, out.getvalue()


def test_untouched_trail_verifies(sealed):
    AuditEventFactory()  # not sealed yet
    report = audit_verify()
    assert report.ok, report.problems
    assert report.blocks_verified == 3
    assert report.events_verified == len(sealed)
    assert report.unsealed_events == 1
    code, output = _run_verify()
    assert code == 0
    assert "Verified 3 sealed blocks" in output and "1 events are not sealed yet" in output and "OK" in output


def test_raw_sql_modification_names_the_event(sealed):
    victim = sealed[6]
    raw_update(victim.seq, http_status=299)
    report = audit_verify()
    assert not report.ok
    first = report.first_problem
    assert (first.kind, first.seq, first.event_id, first.block) == (
        ALTERED,
        victim.seq,
        str(victim.event_id),
        _block_of(victim.seq),
    )
    code, output = _run_verify()
    assert code == 1
    assert f"seq {victim.seq}" in output and str(victim.event_id) in output and f"block {first.block}" in output


def test_json_detail_modification_is_caught(sealed):
    raw_update(sealed[2].seq, detail={"i": 2, "note": "edited"})
    first = audit_verify().first_problem
    assert (first.kind, first.seq) == (ALTERED, sealed[2].seq)


def test_deletion_names_the_event(sealed):
    victim = sealed[3]
    raw_delete(victim.seq)
    report = audit_verify()
    first = report.first_problem
    assert (first.kind, first.seq, first.event_id, first.block) == (
        MISSING,
        victim.seq,
        str(victim.event_id),
        _block_of(victim.seq),
    )
    assert "deleted" in first.message
    code, output = _run_verify()
    assert code == 1 and str(victim.event_id) in output


def test_reordering_names_the_moved_event(sealed):
    a, b = sealed[5], sealed[7]
    placeholder = uuid.uuid4()
    raw_update(a.seq, event_id=placeholder)
    raw_update(b.seq, event_id=a.event_id, detail=a.detail, occurred_at=a.occurred_at, tenant_slug=a.tenant_slug)
    raw_update(a.seq, event_id=b.event_id, detail=b.detail, occurred_at=b.occurred_at, tenant_slug=b.tenant_slug)
    report = audit_verify()
    kinds = {(p.kind, p.seq, p.event_id) for p in report.problems}
    assert (REORDERED, a.seq, str(b.event_id)) in kinds
    assert (REORDERED, b.seq, str(a.event_id)) in kinds
    first = report.first_problem
    assert first.kind == REORDERED and first.seq == a.seq
    assert f"sealed at seq {b.seq}" in first.message


def test_insertion_into_a_signed_gap_is_reported(events):
    last = events[-1].seq
    AuditEventFactory(seq=last + 3)
    audit_seal()
    intruder = AuditEventFactory(seq=last + 1)  # into the gap the seal recorded
    first = audit_verify().first_problem
    assert (first.kind, first.seq, first.event_id) == (INSERTED, intruder.seq, str(intruder.event_id))


def test_altered_block_row_fails_its_signature(sealed):
    with tampering() as cursor:
        cursor.execute("UPDATE audit_sealedblock SET count = 4 WHERE number = 2")
    report = audit_verify()
    assert any(p.kind == BLOCK and p.block == 2 for p in report.problems)


def test_deleted_newest_block_is_missing_not_purged(sealed):
    block = SealedBlock.objects.get(number=3)
    with tampering() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE seq >= %s", [block.first_seq])
        cursor.execute("DELETE FROM audit_sealedblock WHERE number = 3")
    report = audit_verify()
    assert [p.kind for p in report.problems] == [MISSING_BLOCK, CHECKPOINT]
    assert report.first_problem.block == 3
    assert report.problems[1].block == 3 and "missing from the database" in report.problems[1].message
    assert report.purged == []


def test_deleted_middle_block_breaks_the_chain(sealed):
    with tampering() as cursor:
        cursor.execute("DELETE FROM audit_sealedblock WHERE number = 2")
    report = audit_verify()
    assert report.first_problem.kind == MISSING_BLOCK and report.first_problem.block == 2
    assert not any(p.kind == CHAIN and p.block == 3 for p in report.problems[:1])


def test_since_limits_verification_to_recent_blocks(sealed):
    raw_update(sealed[0].seq, http_status=299)
    recent = SealedBlock.objects.get(number=3).last_occurred_at
    assert not audit_verify().ok
    report = audit_verify(since=recent)
    assert report.ok, report.problems
    assert report.blocks_verified == 1
    code, _ = _run_verify("--since", recent.isoformat())
    assert code == 0
    code, output = _run_verify("--since", "not-a-date")
    assert code == 2 and "since" in output


def test_json_report(sealed):
    raw_delete(sealed[0].seq)
    code, output = _run_verify("--json")
    assert code == 1
    assert '"kind": "missing"' in output and '"ok": false' in output
    assert str(sealed[0].event_id) in output


def test_events_are_not_modified_by_verification(sealed):
    before = list(AuditEvent.objects.values_list("seq", "event_id", "http_status"))
    audit_verify()
    assert list(AuditEvent.objects.values_list("seq", "event_id", "http_status")) == before
