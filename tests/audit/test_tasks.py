"""Celery: task logic in eager mode, and sealing through a real worker on the configured broker."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from audit.models import AuditExport, PurgeTombstone, SealedBlock
from audit.schedule import audit_beat_schedule
from audit.selectors import ExportFilters
from audit.services import audit_export_request, audit_verify
from audit.tasks import audit_export_task, audit_purge_task, audit_seal_task
from tests.support import celery_worker

from .conftest import BLOCK_SIZE
from .factories import AuditEventFactory

pytestmark = [pytest.mark.embedded]


@pytest.mark.django_db
def test_seal_task_seals(celery_eager, events):
    outcome = audit_seal_task.delay().get()
    assert outcome["blocks"] == [1, 2, 3] and outcome["events"] == len(events)
    assert audit_seal_task.delay().get()["blocks"] == []  # idempotent


@pytest.mark.django_db
def test_purge_task_purges(celery_eager):
    when = timezone.now() - timedelta(days=400)
    for _ in range(BLOCK_SIZE):
        AuditEventFactory(occurred_at=when)
    audit_seal_task.delay()
    assert audit_purge_task.delay().get()["blocks"] == 1
    assert PurgeTombstone.objects.get().actor == "system:audit.purge"


@pytest.mark.django_db
def test_export_task_is_idempotent(celery_eager, sealed):
    export = audit_export_request(filters=ExportFilters(tenant="acme"), format="jsonl", actor="staff:carol")
    first = audit_export_task.delay(export.pk).get()
    second = audit_export_task.delay(export.pk).get()
    assert first == second == {"export_id": export.pk, "rows": 8, "status": "done"}
    assert AuditExport.objects.get(pk=export.pk).file_path.endswith(f"audit-export-{export.pk}.jsonl")


@pytest.mark.django_db
def test_a_requested_export_is_enqueued_after_commit(monkeypatch, sealed, django_capture_on_commit_callbacks):
    sent: list[int] = []
    monkeypatch.setattr(audit_export_task, "delay", lambda export_id: sent.append(export_id))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        export = audit_export_request(filters=ExportFilters(tenant="acme"), format="csv", actor="staff:carol")
        assert sent == []  # nothing is sent before the row is committed
    assert len(callbacks) == 1 and sent == [export.pk]
    assert AuditExport.objects.get(pk=export.pk).status == AuditExport.Status.PENDING


@pytest.mark.django_db
def test_an_unreachable_broker_fails_the_export_visibly(monkeypatch, sealed, django_capture_on_commit_callbacks):
    """Nothing re-enqueues an export, so a broker outage must not leave it pending forever."""
    from kombu.exceptions import OperationalError

    def broker_down(*args):
        raise OperationalError("connection refused")

    monkeypatch.setattr(audit_export_task, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        export = audit_export_request(filters=ExportFilters(tenant="acme"), format="csv", actor="staff:carol")
    export.refresh_from_db()
    assert export.status == AuditExport.Status.FAILED
    assert "job queue is unavailable" in export.error


def test_beat_schedule_entries():
    schedule = audit_beat_schedule(seal_interval_seconds=60)
    assert schedule["audit-seal"]["task"] == audit_seal_task.name == "audit.seal"
    assert schedule["audit-seal"]["schedule"] == 60.0
    assert schedule["audit-purge"]["task"] == audit_purge_task.name == "audit.purge"


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_seals_an_enqueued_run(settings):
    events = [AuditEventFactory() for _ in range(3)]
    with celery_worker(AUDIT_CHECKPOINT_DIR=settings.AUDIT_CHECKPOINT_DIR):
        # The worker uses the deployment's safety lag; let the events age past it first.
        time.sleep(2.5)
        audit_seal_task.delay()
        # Wait for the checkpoint, not only the block: the block commits before the task writes the
        # checkpoint outside the database, and a loaded host could stop the worker in between.
        checkpoints = Path(settings.AUDIT_CHECKPOINT_DIR)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (SealedBlock.objects.exists() and any(checkpoints.glob("**/*.json"))):
            time.sleep(0.3)
    block = SealedBlock.objects.get()
    assert (block.first_seq, block.last_seq, block.count) == (1, events[-1].seq, 3)
    assert audit_verify().ok
