"""Retention: floor enforced, legal holds, and a purge of whole blocks that leaves signed tombstones."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.errors import LegalHoldAlreadyReleased, LegalHoldNotFound, RetentionBelowFloor
from audit.models import AuditEvent, LegalHold, PurgeTombstone, SealedBlock, TenantRetention
from audit.selectors import ExportFilters
from audit.services import (
    audit_export_write,
    audit_purge,
    audit_seal,
    audit_verify,
    legal_hold_place,
    legal_hold_release,
    retention_set,
)
from audit.services.verification import INSERTED
from audit.verify_export import verify_export

from .conftest import BLOCK_SIZE, trusted_pem
from .factories import AuditEventFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _events(n: int, *, days_ago: float, tenant: str = "acme") -> list[AuditEvent]:
    when = timezone.now() - timedelta(days=days_ago)
    return [AuditEventFactory(occurred_at=when, tenant_slug=tenant) for _ in range(n)]


@pytest.fixture
def aged():
    """Two blocks of 400-day-old acme events, then one recent block."""
    old = _events(2 * BLOCK_SIZE, days_ago=400)
    recent = _events(BLOCK_SIZE, days_ago=1)
    audit_seal()
    return old, recent


def test_retention_below_the_floor_is_refused():
    with pytest.raises(RetentionBelowFloor) as excinfo:
        retention_set(tenant_slug="acme", retention_days=179, actor="staff:alice")
    assert excinfo.value.status == 400 and excinfo.value.code == "retention_below_floor"
    assert not TenantRetention.objects.exists()
    with pytest.raises(ValidationError):
        TenantRetention(tenant_slug="acme", retention_days=100).full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        TenantRetention.objects.create(tenant_slug="acme", retention_days=100)


def test_retention_changes_are_audited():
    retention_set(tenant_slug="acme", retention_days=400, actor="staff:alice", tenant_id=7)
    retention_set(tenant_slug="acme", retention_days=730, actor="staff:bob")
    events = list(AuditEvent.objects.filter(action="retention.set").order_by("seq"))
    assert [e.detail["before"] for e in events] == [None, {"retention_days": 400}]
    assert events[1].detail["after"] == {"retention_days": 730} and events[1].actor == "staff:bob"
    assert TenantRetention.objects.get(tenant_slug="acme").retention_days == 730


def test_legal_hold_lifecycle_is_audited():
    hold = legal_hold_place(tenant_slug="acme", reason="litigation 7", actor="staff:legal")
    released = legal_hold_release(hold_id=hold.pk, actor="staff:legal", reason="settled")
    assert not released.active and released.released_reason == "settled"
    with pytest.raises(LegalHoldAlreadyReleased):
        legal_hold_release(hold_id=hold.pk, actor="staff:legal", reason="again")
    with pytest.raises(LegalHoldNotFound):
        legal_hold_release(hold_id=999, actor="staff:legal", reason="x")
    actions = list(
        AuditEvent.objects.filter(event_type=AuditEvent.Type.LEGAL_HOLD).values_list("action", "tenant_slug")
    )
    assert actions == [("legal_hold.place", "acme"), ("legal_hold.release", "acme")]


def test_purge_removes_expired_blocks_and_leaves_a_signed_tombstone(aged):
    old, recent = aged
    result = audit_purge(actor="system:test")
    assert (result.blocks, result.events) == (2, 2 * BLOCK_SIZE)
    assert not AuditEvent.objects.filter(seq__in=[e.seq for e in old]).exists()
    assert AuditEvent.objects.filter(seq__in=[e.seq for e in recent]).count() == BLOCK_SIZE
    assert list(SealedBlock.objects.values_list("number", flat=True)) == [3]
    tomb = PurgeTombstone.objects.get()
    assert (tomb.first_block, tomb.last_block, tomb.first_seq, tomb.event_count) == (1, 2, 1, 2 * BLOCK_SIZE)
    assert tomb.last_seq == old[-1].seq and tomb.tenants == {"acme": 2 * BLOCK_SIZE}
    purge_event = AuditEvent.objects.get(event_type=AuditEvent.Type.PURGE)
    assert purge_event.detail["after"]["tombstone"] == tomb.pk and purge_event.actor == "system:test"
    report = audit_verify()
    assert report.ok, report.problems
    assert report.purged_events == 2 * BLOCK_SIZE and report.purged[0].first_block == 1
    assert audit_purge().blocks == 0  # idempotent


def test_verify_command_reports_purged_not_missing(aged):
    audit_purge()
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    assert "Purged by retention: 2 blocks, 10 events" in out.getvalue()
    assert "OK" in out.getvalue()


def test_event_inserted_into_a_purged_range_is_flagged(aged):
    old, _ = aged
    audit_purge()
    intruder = AuditEventFactory(seq=old[2].seq)
    first = audit_verify().first_problem
    assert (first.kind, first.seq, first.event_id) == (INSERTED, intruder.seq, str(intruder.event_id))


def test_longer_tenant_retention_keeps_its_blocks(aged):
    retention_set(tenant_slug="acme", retention_days=730, actor="staff:alice")
    assert audit_purge().blocks == 0
    assert SealedBlock.objects.count() == 3


def test_a_mixed_block_waits_for_its_longest_retention(db):
    _events(BLOCK_SIZE - 1, days_ago=400, tenant="acme")
    _events(1, days_ago=400, tenant="globex")
    _events(BLOCK_SIZE, days_ago=400, tenant="acme")
    audit_seal()
    retention_set(tenant_slug="globex", retention_days=500, actor="staff:alice")
    result = audit_purge()
    assert result.blocks == 1
    assert list(SealedBlock.objects.values_list("number", flat=True)) == [1]
    assert audit_verify().ok


def test_legal_hold_blocks_the_purge_until_released(aged):
    hold = legal_hold_place(tenant_slug="acme", reason="litigation", actor="staff:legal")
    result = audit_purge()
    assert result.blocks == 0 and result.held_blocks == 2
    legal_hold_release(hold_id=hold.pk, actor="staff:legal", reason="done")
    assert audit_purge().blocks == 2


def test_global_hold_covers_every_tenant(aged):
    legal_hold_place(tenant_slug=LegalHold.ALL_TENANTS, reason="regulator inquiry", actor="staff:legal")
    assert audit_purge().blocks == 0


def test_hold_on_another_tenant_does_not_stop_the_purge(aged):
    legal_hold_place(tenant_slug="globex", reason="other", actor="staff:legal")
    assert audit_purge().blocks == 2


def test_the_floor_holds_even_with_a_misconfigured_default(settings, db):
    settings.AUDIT_DEFAULT_RETENTION_DAYS = 30
    _events(BLOCK_SIZE, days_ago=100)
    audit_seal()
    assert audit_purge().blocks == 0


def test_unsealed_events_are_never_purged(db):
    _events(BLOCK_SIZE, days_ago=400)
    assert audit_purge().blocks == 0
    assert AuditEvent.objects.count() == BLOCK_SIZE


def test_exports_after_a_purge_carry_the_tombstone_and_verify(aged, tmp_path):
    audit_purge()
    path = tmp_path / "after.jsonl"
    with path.open("wb") as fh:
        manifest = audit_export_write(filters=ExportFilters(), format="jsonl", stream=fh, actor="staff:carol")
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    assert manifest["purged_ranges"][0]["header"]["first_block"] == 1
    assert verify_export(path, tmp_path / "m.json", public_key_pem=trusted_pem()).ok


def test_purge_command(aged):
    out = io.StringIO()
    call_command("purge_audit", stdout=out)
    assert "Purged 2 block(s), 10 event(s) into 1 tombstone(s)" in out.getvalue()
