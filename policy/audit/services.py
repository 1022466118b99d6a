"""Writes to the audit trail.

``audit_event_record`` is the single entry point every other app uses.  The
per-request write is exactly one INSERT (no read-before-write, no chain hash
computed inline): sealing happens later in bulk, so request throughput never
depends on it.  A failure to store raises :class:`AuditUnavailable` so that
the caller answers 503 instead of serving an unrecorded response.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from gateway.errors import AuditUnavailable
from policy.audit.models import AuditEvent

logger = logging.getLogger("policy.audit")

_FIELDS = {f.name for f in AuditEvent._meta.get_fields()} - {"seq", "event_id"}


def audit_input_digest(*, payload: bytes) -> str:
    """Keyed digest of a request's inputs: proves what was sent without keeping it (PIPL)."""
    return hmac.new(settings.AUDIT_INPUT_DIGEST_KEY.encode(), payload, hashlib.sha256).hexdigest()


def audit_event_record(*, event_type: str, **fields: Any) -> AuditEvent:
    """Store one audit event durably (one INSERT) or raise ``AuditUnavailable``.

    ``fields`` are ``AuditEvent`` field names; unknown names are a programming
    error and raise ``TypeError`` at once.
    """
    unknown = set(fields) - _FIELDS
    if unknown:
        raise TypeError(f"unknown audit fields: {sorted(unknown)}")
    fields.setdefault("occurred_at", timezone.now())
    try:
        return AuditEvent.objects.create(event_type=event_type, **fields)
    except DatabaseError as exc:
        logger.error("audit insert failed", extra={"error": str(exc)})
        raise AuditUnavailable("The audit trail could not record this request; nothing was served.") from exc


def audit_change_record(
    *,
    actor: str,
    action: str,
    target: str,
    before: Any = None,
    after: Any = None,
    tenant_id: int | None = None,
    tenant_slug: str = "",
    event_type: str = AuditEvent.Type.CONFIG_CHANGE,
    request_id: str = "",
    extra: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record an admin/command change with before/after values (never secrets)."""
    detail: dict[str, Any] = {"target": target, "before": before, "after": after}
    if extra:
        detail.update(extra)
    return audit_event_record(
        event_type=event_type,
        action=action,
        actor=actor,
        tenant_id=tenant_id,
        tenant_slug=tenant_slug,
        request_id=request_id,
        detail=detail,
    )
