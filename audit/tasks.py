"""Celery tasks of the audit trail: seal (beat, every minute), purge, partitions and verify (beat, daily), export.

Each task calls one service and is idempotent: sealing and purging start from
the current chain state, and a finished export is left alone.  Transient
database errors are retried with backoff.
"""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from audit.errors import AuditUnavailable
from audit.services import audit_export_run, audit_purge, audit_seal
from audit.services.export import AUDIT_EXPORT_TASK
from audit.services.oversight import AUDIT_VERIFY_TASK, audit_verification_run
from audit.services.partitions import audit_partitions_ensure
from audit.services.retained import retained_inputs_shred

_TRANSIENT = (OperationalError, InterfaceError, AuditUnavailable)


@shared_task(name="audit.seal", autoretry_for=_TRANSIENT, retry_backoff=True, max_retries=5)
def audit_seal_task() -> dict:
    """Seal every sealable event into signed blocks."""
    result = audit_seal()
    return {"blocks": result.blocks, "events": result.events}


@shared_task(name="audit.purge", autoretry_for=_TRANSIENT, retry_backoff=True, max_retries=5)
def audit_purge_task() -> dict:
    """Purge whole sealed blocks past retention, leaving signed tombstones."""
    result = audit_purge(actor="system:audit.purge")
    return {"tombstones": result.tombstones, "blocks": result.blocks, "events": result.events}


@shared_task(name="audit.partitions_ensure", autoretry_for=_TRANSIENT, retry_backoff=True, max_retries=5)
def audit_partitions_ensure_task() -> dict:
    """Create the event table's monthly partitions ahead (PostgreSQL; nothing to do on SQLite)."""
    return {"created": audit_partitions_ensure()}


@shared_task(name=AUDIT_EXPORT_TASK, autoretry_for=_TRANSIENT, retry_backoff=True, max_retries=3)
def audit_export_task(export_id: int) -> dict:
    """Write a queued export (file + manifest) with progress."""
    export = audit_export_run(export_id=export_id)
    return {"export_id": export.pk, "rows": export.row_count, "status": export.status}


@shared_task(name="audit.shred_retained_inputs", autoretry_for=_TRANSIENT, retry_backoff=True, max_retries=5)
def retained_inputs_shred_task() -> dict:
    """Destroy the keys of retained raw inputs past their retention (crypto-shredding), with signed tombstones."""
    return {"tombstones": retained_inputs_shred(actor="system:audit.shred_retained_inputs")}


@shared_task(name=AUDIT_VERIFY_TASK, autoretry_for=_TRANSIENT, retry_backoff=True, max_retries=3)
def audit_verify_task(actor: str, request_seq: int | None = None, full: bool = False) -> dict:
    """Verify the chain ("Verify now" in the admin, the daily beat run) and record the outcome in the trail.

    Incremental from the last recorded verification unless ``full``: a retry
    or a second run only re-checks what the first did not record as verified.
    """
    event = audit_verification_run(actor=actor, request_seq=request_seq, full=full)
    return {"seq": event.seq, "ok": event.detail["ok"], "mode": event.detail["mode"]}
