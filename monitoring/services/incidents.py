"""The incident desk: open or escalate incidents, freeze the model's evidence, act on them, audited.

An incident is opened directly on a model version or escalated from an alert
(one incident per alert: a concurrent second escalation gets the first one).
Opening it records a signed snapshot -- the version and its checksum, the
policy versions in force, the head of the audit chain -- with the audit
signing key, so the state the authority will evaluate is fixed in a form the
operator cannot later rewrite without detection.

While an incident is ``open`` or ``reported`` the model's evidence is frozen:
:func:`evidence_frozen_check`, registered as an ``inference`` lifecycle guard
by the app config, refuses activation, rollback and retirement of every
version of the model with ``evidence_frozen`` (409) -- EU AI Act Art. 73(6):
no alteration that could affect the evaluation before the authority is
informed.  ``released`` (with a reason) or ``closed`` (with a root cause)
lifts the freeze.

Every action is one transaction that writes an ``IncidentNote`` on the
timeline and an audit event (type ``monitoring``); a failed audit insert
rolls the action back.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.canonical import canonical_json, timestamp_text
from audit.models import AuditEvent, SealState
from audit.selectors import audit_last_seq
from audit.services import audit_change_record
from audit.signing import signing_identity
from core.errors import ValidationFailed
from inference.models import ModelVersion
from monitoring.errors import EvidenceFrozen, IncidentConflict
from monitoring.models import Alert, Incident, IncidentNote, WebhookEndpoint
from monitoring.services.webhooks import webhook_incident_event
from policy.models import KillSwitch, Policy
from policy.services import kill_switch_engage

SNAPSHOT_KIND = "maas-incident-snapshot"


def deadline_table() -> dict[str, int]:
    """Statutory category -> days to report (``settings.INCIDENT_DEADLINE_DAYS``)."""
    return dict(settings.INCIDENT_DEADLINE_DAYS)


def _required(value: str, what: str) -> str:
    value = (value or "").strip()
    if not value:
        raise ValidationFailed(f"{what} is required; it is kept in the audit trail.")
    return value


def _audit(*, incident: Incident, actor: str, action: str, before: Any, after: Any, **extra: Any) -> None:
    version = incident.model_version
    audit_change_record(
        actor=actor,
        action=action,
        target=f"incident:{incident.pk}",
        before=before,
        after=after,
        event_type=AuditEvent.Type.MONITORING,
        extra={
            "incident_id": incident.pk,
            "model_name": version.name,
            "model_version": version.version,
            "model_sha256": version.sha256,
            **extra,
        },
    )


def _timeline(*, incident: Incident, actor: str, text: str, action: str = "", kind: str = IncidentNote.Kind.ACTION):
    IncidentNote.objects.create(incident=incident, actor=actor, kind=kind, action=action, text=text[:5000])


def policy_versions_in_force() -> list[str]:
    """``name@number`` of every enabled policy's current version (what judged requests at this moment)."""
    rows = Policy.objects.filter(enabled=True, current_version__isnull=False).select_related("current_version")
    return sorted(f"{p.name}@{p.current_version.number}" for p in rows)


def snapshot_signed_bytes(snapshot: dict[str, Any]) -> bytes:
    """The bytes the snapshot signature covers (canonical JSON, ASCII)."""
    return canonical_json(snapshot).encode("ascii")


def _snapshot(*, version: ModelVersion, opened_at: Any) -> tuple[dict[str, Any], str]:
    identity = signing_identity()
    state = SealState.objects.filter(pk=1).first()
    body = {
        "kind": SNAPSHOT_KIND,
        "taken_at": timestamp_text(opened_at),
        "model": {
            "name": version.name,
            "version": version.version,
            "sha256": version.sha256,
            "file_size": version.file_size,
            "status": version.status,
            "risk_tier": version.risk_tier,
        },
        "policy_versions": policy_versions_in_force(),
        "audit_head": {
            "last_seq": audit_last_seq(),
            "sealed_through": state.head_last_seq if state else 0,
            "sealed_block": state.head_number if state else 0,
            "sealed_block_hash": state.head_hash if state else "",
        },
        "key_id": identity.key_id,
        "signature_algorithm": identity.algorithm,
    }
    return body, identity.sign(snapshot_signed_bytes(body))


def _create(
    *,
    version: ModelVersion,
    title: str,
    severity: str,
    category: str,
    actor: str,
    alert: Alert | None,
    window_start: Any,
) -> Incident:
    """Insert the incident (caller holds the transaction and the model's version locks)."""
    now = timezone.now()
    days = deadline_table()[category]
    snapshot, signature = _snapshot(version=version, opened_at=now)
    incident = Incident.objects.create(
        model_version=version,
        model_name=version.name,
        alert=alert,
        title=title[:200],
        severity=severity,
        category=category,
        deadline_days=days,
        opened_at=now,
        opened_by=actor,
        deadline=now + timedelta(days=days),
        window_start=window_start,
        snapshot=snapshot,
        snapshot_signature=signature,
    )
    _timeline(incident=incident, actor=actor, action="open", text=f"Opened ({severity}, {category}): {title}")
    _audit(
        incident=incident,
        actor=actor,
        action="monitoring.incident_open",
        before=None,
        after={"status": incident.status, "severity": severity, "category": category},
        deadline=timestamp_text(incident.deadline),
        alert_id=alert.pk if alert else None,
        snapshot_signature=signature,
    )
    webhook_incident_event(incident=incident, kind=WebhookEndpoint.Kind.INCIDENT_OPENED, actor=actor)
    return incident


def _check_fields(*, title: str, severity: str, category: str) -> str:
    title = _required(title, "A title")
    if severity not in Incident.Severity.values:
        raise ValidationFailed(f"severity must be one of {', '.join(Incident.Severity.values)}.")
    if category not in deadline_table():
        raise ValidationFailed(f"category must be one of {', '.join(sorted(deadline_table()))}.")
    return title


def _lock_model(name: str) -> None:
    # The lock _activate takes: activation and opening an incident serialise.
    list(ModelVersion.objects.select_for_update().filter(name=name).order_by("pk").values_list("pk", flat=True))


def incident_open(
    *, version: ModelVersion, title: str, severity: str, category: str, actor: str, window_start: Any = None
) -> Incident:
    """Open an incident on ``version`` directly (no alert); freezes the model's evidence at once."""
    title = _check_fields(title=title, severity=severity, category=category)
    now = timezone.now()
    start = window_start or now - timedelta(hours=float(settings.INCIDENT_LOOKBACK_HOURS))
    with transaction.atomic():
        _lock_model(version.name)
        version = ModelVersion.objects.get(pk=version.pk)
        return _create(
            version=version,
            title=title,
            severity=severity,
            category=category,
            actor=actor,
            alert=None,
            window_start=start,
        )


def incident_escalate(
    *, alert: Alert, severity: str, category: str, actor: str, title: str = ""
) -> tuple[Incident, bool]:
    """Escalate ``alert`` to an incident; ``(incident, created)`` -- an escalated alert returns its incident."""
    title = _check_fields(title=title or f"Alert #{alert.pk}: {alert.rule_id}", severity=severity, category=category)
    try:
        with transaction.atomic():
            target = Alert.objects.select_for_update().select_related("model_version", "first_result").get(pk=alert.pk)
            existing = Incident.objects.filter(alert=target).first()
            if existing is not None:
                return existing, False
            _lock_model(target.model_version.name)
            incident = _create(
                version=target.model_version,
                title=title,
                severity=severity,
                category=category,
                actor=actor,
                alert=target,
                window_start=target.first_result.window_start,
            )
            return incident, True
    except IntegrityError:
        # A concurrent escalation of the same alert won the one-to-one: return its incident.
        return Incident.objects.get(alert_id=alert.pk), False


def evidence_frozen_check(*, version: Any, operation: str) -> None:
    """Lifecycle guard: refuse ``operation`` on any version of a model with an open incident (``EvidenceFrozen``)."""
    frozen = (
        Incident.objects.filter(model_name=version.name, status__in=Incident.FREEZING)
        .order_by("opened_at")
        .values_list("pk", flat=True)
        .first()
    )
    if frozen is not None:
        raise EvidenceFrozen(
            f"Model {version.name!r} is under incident #{frozen}: its evidence is frozen, so {operation} is refused "
            "until the incident is closed or released with a reason.",
            incident_id=frozen,
        )


def _locked(incident: Incident, *allowed: str) -> Incident:
    target = Incident.objects.select_for_update().select_related("model_version").get(pk=incident.pk)
    if allowed and target.status not in allowed:
        raise IncidentConflict(f"Incident #{target.pk} is {target.status}; this action needs {' or '.join(allowed)}.")
    return target


def incident_note_add(*, incident: Incident, actor: str, text: str) -> IncidentNote:
    """Attach an operator's note to the timeline (audited)."""
    text = _required(text, "A note")
    with transaction.atomic():
        target = _locked(incident)
        note = IncidentNote.objects.create(incident=target, actor=actor, kind=IncidentNote.Kind.NOTE, text=text[:5000])
        _audit(
            incident=target,
            actor=actor,
            action="monitoring.incident_note",
            before=None,
            after={"note": note.pk},
            note=text[:500],
        )
    return note


def incident_kill_switch(*, incident: Incident, actor: str, reason: str) -> KillSwitch:
    """Engage the model's kill switch from the incident (``KillSwitchConflict`` if already engaged)."""
    reason = _required(reason, "A reason")
    with transaction.atomic():
        target = _locked(incident)
        switch = kill_switch_engage(
            target_type=KillSwitch.TargetType.MODEL,
            target=target.model_name,
            reason=f"incident #{target.pk}: {reason}",
            actor=actor,
        )
        _timeline(
            incident=target, actor=actor, action="kill_switch", text=f"Kill switch #{switch.pk} engaged: {reason}"
        )
        _audit(
            incident=target,
            actor=actor,
            action="monitoring.incident_kill_switch",
            before=None,
            after={"kill_switch_id": switch.pk},
            reason=reason[:500],
        )
    return switch


def incident_mark_reported(*, incident: Incident, actor: str, reference: str) -> Incident:
    """Record that the authority was informed, with its reference (an incomplete first report is allowed)."""
    reference = _required(reference, "The authority's reference")
    with transaction.atomic():
        target = _locked(incident, Incident.Status.OPEN, Incident.Status.REPORTED)
        before = target.status
        now = timezone.now()
        target.reported_at = target.reported_at or now
        target.authority_reference = reference[:200]
        target.status = Incident.Status.REPORTED
        target.save(update_fields=["reported_at", "authority_reference", "status"])
        _timeline(incident=target, actor=actor, action="reported", text=f"Reported to the authority: {reference}")
        _audit(
            incident=target,
            actor=actor,
            action="monitoring.incident_reported",
            before={"status": before},
            after={"status": target.status, "authority_reference": target.authority_reference},
            overdue_at_report=target.deadline <= now,
        )
        webhook_incident_event(incident=target, kind=WebhookEndpoint.Kind.INCIDENT_REPORTED, actor=actor)
    return target


def _conclude(
    *,
    incident: Incident,
    actor: str,
    allowed: tuple[str, ...],
    status: str,
    stamp: str,
    field: str,
    value: str,
    audit_key: str,
    timeline: tuple[str, str],
    action: str,
    kind: str,
) -> Incident:
    """Move an incident to ``status`` with its stamp and stated text, on the timeline, audited, notified."""
    with transaction.atomic():
        target = _locked(incident, *allowed)
        before = target.status
        target.status = status
        setattr(target, stamp, timezone.now())
        setattr(target, field, value[:5000])
        target.save(update_fields=["status", stamp, field])
        _timeline(incident=target, actor=actor, action=timeline[0], text=timeline[1])
        _audit(
            incident=target,
            actor=actor,
            action=action,
            before={"status": before},
            after={"status": target.status},
            **{audit_key: value[:500]},
        )
        webhook_incident_event(incident=target, kind=kind, actor=actor)
    return target


def incident_release(*, incident: Incident, actor: str, reason: str) -> Incident:
    """Lift the evidence freeze before closing, with a reason (audited); the incident stays on the desk."""
    reason = _required(reason, "A reason for releasing the evidence")
    return _conclude(
        incident=incident,
        actor=actor,
        allowed=(Incident.Status.OPEN, Incident.Status.REPORTED),
        status=Incident.Status.RELEASED,
        stamp="released_at",
        field="release_reason",
        value=reason,
        audit_key="reason",
        timeline=("released", f"Evidence released: {reason}"),
        action="monitoring.incident_release",
        kind=WebhookEndpoint.Kind.INCIDENT_RELEASED,
    )


def incident_close(*, incident: Incident, actor: str, root_cause: str) -> Incident:
    """Close the incident with its root cause (audited); lifts the freeze."""
    root_cause = _required(root_cause, "A root cause")
    return _conclude(
        incident=incident,
        actor=actor,
        allowed=(Incident.Status.OPEN, Incident.Status.REPORTED, Incident.Status.RELEASED),
        status=Incident.Status.CLOSED,
        stamp="closed_at",
        field="root_cause",
        value=root_cause,
        audit_key="root_cause",
        timeline=("closed", f"Closed; root cause: {root_cause}"),
        action="monitoring.incident_close",
        kind=WebhookEndpoint.Kind.INCIDENT_CLOSED,
    )
