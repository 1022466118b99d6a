"""Alerts: a breach of an enforce ``monitoring`` rule opens one; an operator closes it with a note.

A version has at most one open alert per rule (a partial unique index): a
later breaching window of the same rule is attached to the open alert.  Opening,
updating and closing are audited (event type ``monitoring``); opening and
closing send the signed ``alert.opened`` / ``alert.closed`` webhooks (after commit).  Escalation to an
incident with a statutory clock is the incident desk's (not built yet).
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_change_record
from core.errors import ValidationFailed
from inference.models import ModelVersion
from monitoring.errors import AlertConflict
from monitoring.models import Alert, MonitorResult, WebhookEndpoint
from monitoring.services.webhooks import webhook_alert_event


def _audit(*, alert: Alert, actor: str, action: str, before: Any, after: Any, **extra: Any) -> None:
    version = alert.model_version
    audit_change_record(
        actor=actor,
        action=action,
        target=f"alert:{alert.pk}",
        before=before,
        after=after,
        event_type=AuditEvent.Type.MONITORING,
        extra={
            "alert_id": alert.pk,
            "model_name": version.name,
            "model_version": version.version,
            "model_sha256": version.sha256,
            "rule_id": alert.rule_id,
            **extra,
        },
    )


def alert_raise(
    *, version: ModelVersion, result: MonitorResult, rule_id: str, policy_version: str, measures: list[dict[str, Any]]
) -> tuple[Alert, bool]:
    """Open an alert for ``rule_id`` on ``version``, or attach ``result`` to the open one; ``(alert, opened)``."""
    with transaction.atomic():
        current = (
            Alert.objects.select_for_update()
            .filter(model_version=version, rule_id=rule_id, status=Alert.Status.OPEN)
            .first()
        )
        if current is None:
            try:
                with transaction.atomic():
                    alert = Alert.objects.create(
                        model_version=version,
                        rule_id=rule_id,
                        policy_version=policy_version,
                        measures=measures,
                        first_result=result,
                        last_result=result,
                    )
            except IntegrityError:
                # Another window of this rule opened it a moment ago: attach to that one.
                current = Alert.objects.select_for_update().get(
                    model_version=version, rule_id=rule_id, status=Alert.Status.OPEN
                )
            else:
                _audit(
                    alert=alert,
                    actor="monitoring",
                    action="monitoring.alert_open",
                    before=None,
                    after={"status": alert.status, "measures": measures},
                    policy_version=policy_version,
                    monitor_result_id=result.pk,
                )
                webhook_alert_event(alert=alert, kind=WebhookEndpoint.Kind.ALERT_OPENED, actor="monitoring")
                return alert, True
        current.windows += 1
        current.last_result = result
        current.last_seen_at = timezone.now()
        current.measures = measures
        current.save(update_fields=["windows", "last_result", "last_seen_at", "measures"])
        _audit(
            alert=current,
            actor="monitoring",
            action="monitoring.alert_update",
            before={"windows": current.windows - 1},
            after={"windows": current.windows, "measures": measures},
            monitor_result_id=result.pk,
        )
        return current, False


def alert_close(*, alert: Alert, actor: str, note: str) -> Alert:
    """Close an open alert with the operator's note (required), audited; ``AlertConflict`` if already closed."""
    note = (note or "").strip()
    if not note:
        raise ValidationFailed("Closing an alert needs a note saying why; it is kept in the audit trail.")
    with transaction.atomic():
        target = Alert.objects.select_for_update().select_related("model_version").get(pk=alert.pk)
        if target.status != Alert.Status.OPEN:
            raise AlertConflict(f"Alert #{target.pk} is already closed.")
        target.status = Alert.Status.CLOSED
        target.closed_at = timezone.now()
        target.closed_by = actor
        target.close_note = note[:5000]
        target.save(update_fields=["status", "closed_at", "closed_by", "close_note"])
        _audit(
            alert=target,
            actor=actor,
            action="monitoring.alert_close",
            before={"status": Alert.Status.OPEN},
            after={"status": target.status},
            note=target.close_note[:500],
        )
        webhook_alert_event(alert=target, kind=WebhookEndpoint.Kind.ALERT_CLOSED, actor=actor)
    return target
