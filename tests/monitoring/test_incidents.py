"""The incident desk: escalation, the evidence freeze, statutory clocks, actions and their audit, hostile input."""

from __future__ import annotations

import threading
from datetime import timedelta

import numpy as np
import pytest
from cryptography.exceptions import InvalidSignature
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from audit.signing import signing_identity
from inference.models import ModelRollout, ModelVersion
from inference.services import model_version_activate, model_version_register, model_version_retire
from inference.services.rollouts import rollout_start
from monitoring.errors import EvidenceFrozen, IncidentConflict
from monitoring.live import LiveStats, batch_counts
from monitoring.models import Alert, Incident
from monitoring.selectors import incident_get, incidents_overdue, live_bins_get
from monitoring.services import (
    incident_close,
    incident_escalate,
    incident_kill_switch,
    incident_mark_reported,
    incident_note_add,
    incident_open,
    incident_release,
    live_window_merge,
    window_evaluate,
)
from monitoring.services.incidents import snapshot_signed_bytes
from policy.models import KillSwitch
from policy.services import policy_create
from tests.support import assert_problem

pytestmark = pytest.mark.django_db


def raise_alert() -> Alert:
    """A drift alert on digits v1: one window of saturated pixels judged by an enforce rule."""
    rule = {"id": "drift", "type": "monitoring", "mode": "enforce", "params": {"thresholds": {"feature_psi": 0.5}}}
    policy_create(name="drift", document=[rule], actor="staff:test", reason="watch")
    bins = live_bins_get(name="digits", version=1)
    stats = LiveStats()
    batch = batch_counts(bins=bins, features=np.full((120, 64), 16.0), probabilities=np.full((120, 10), 0.1))
    stats.add_batch(name="digits", version=1, bins=bins, batch=batch, now=1_000_000)
    ((key, counts),) = stats.drain()
    window = live_window_merge(model_name="digits", version=1, window_start=key[2], counts=counts.as_record())
    window_evaluate(window_id=window.pk)
    return Alert.objects.get()


@pytest.fixture
def second(profiled, onnx_bytes) -> ModelVersion:
    """digits v2, staged next to the active v1."""
    return model_version_register(name="digits", data=onnx_bytes, actor="test")


def test_an_escalated_alert_freezes_the_model_until_released_with_a_reason(profiled, second):
    alert = raise_alert()
    incident, created = incident_escalate(alert=alert, severity="high", category="default", actor="staff:ops")
    assert created and incident.status == "open" and incident.deadline_days == 15
    assert incident.deadline == incident.opened_at + timedelta(days=15)
    assert incident.window_start == alert.first_result.window_start
    for refused in (
        lambda: model_version_activate(version=second, actor="staff:ops"),
        lambda: model_version_retire(version=second, actor="staff:ops"),
        # Nor may part of the traffic go to another version: a canary or a shadow is an activation too.
        lambda: rollout_start(name="digits", version=second.version, actor="staff:ops", canary_percent=10),
        lambda: rollout_start(name="digits", version=second.version, actor="staff:ops", shadow=True),
    ):
        with pytest.raises(EvidenceFrozen) as excinfo:
            refused()
        assert (excinfo.value.status, excinfo.value.code) == (409, "evidence_frozen")
    assert ModelVersion.objects.get(pk=second.pk).status == "staged"
    assert not ModelRollout.objects.exists()
    # Reporting does not lift the freeze (Art. 73(6): until the authority is informed *and* it is lifted).
    incident_mark_reported(incident=incident, actor="staff:ops", reference="MSA-2026-0042")
    with pytest.raises(EvidenceFrozen):
        model_version_activate(version=second, actor="staff:ops")
    with pytest.raises(Exception, match="reason") as excinfo:
        incident_release(incident=incident, actor="staff:ops", reason="   ")
    assert excinfo.value.status == 400
    released = incident_release(incident=incident, actor="staff:ops", reason="authority agreed to the fix")
    assert released.status == "released"
    assert model_version_activate(version=second, actor="staff:ops").status == "active"
    with pytest.raises(Exception, match="root cause"):
        incident_close(incident=incident, actor="staff:ops", root_cause="")
    closed = incident_close(incident=incident, actor="staff:ops", root_cause="scanner saturation after firmware 2.1")
    with pytest.raises(IncidentConflict):
        incident_release(incident=closed, actor="staff:ops", reason="again")
    actions = sorted(
        AuditEvent.objects.filter(action__startswith="monitoring.incident").values_list("action", flat=True)
    )
    assert actions == sorted(
        [
            "monitoring.incident_open",
            "monitoring.incident_reported",
            "monitoring.incident_release",
            "monitoring.incident_close",
        ]
    )
    timeline = [n.action for n in closed.notes.all()]
    assert timeline == ["open", "reported", "released", "closed"]


def test_opening_records_a_snapshot_signed_with_the_audit_key(profiled):
    incident = incident_open(
        version=profiled, title="complaint", severity="critical", category="death", actor="staff:a"
    )
    snapshot = incident.snapshot
    assert snapshot["model"] == {
        "name": "digits",
        "version": 1,
        "sha256": profiled.sha256,
        "file_size": profiled.file_size,
        "status": "active",
        "risk_tier": profiled.risk_tier,
    }
    assert snapshot["audit_head"]["last_seq"] >= 1 and incident.deadline_days == 10
    key = signing_identity().public_key
    key.verify(bytes.fromhex(incident.snapshot_signature), snapshot_signed_bytes(snapshot))
    forged = {**snapshot, "model": {**snapshot["model"], "sha256": "0" * 64}}
    with pytest.raises(InvalidSignature):
        key.verify(bytes.fromhex(incident.snapshot_signature), snapshot_signed_bytes(forged))


def test_a_two_day_incident_becomes_overdue_after_48_hours(profiled, admin_client, monkeypatch):
    start = timezone.now().replace(microsecond=0)
    clock = {"now": start}
    monkeypatch.setattr(timezone, "now", lambda: clock["now"])
    incident = incident_open(
        version=profiled, title="grid outage", severity="critical", category="critical_infrastructure", actor="s:a"
    )
    assert incident.deadline == start + timedelta(hours=48)
    changelist = reverse("admin:monitoring_incident_changelist")
    overdue_view = f"{changelist}?overdue=yes"
    clock["now"] = start + timedelta(hours=47, minutes=59)
    assert not incident_get(incident_id=incident.pk).is_overdue() and not incidents_overdue().exists()
    assert "grid outage" not in admin_client.get(overdue_view).content.decode()
    assert "due in under an hour" in admin_client.get(changelist).content.decode()
    clock["now"] = start + timedelta(hours=48)
    assert list(incidents_overdue()) == [incident] and incident_get(incident_id=incident.pk).is_overdue()
    page = admin_client.get(overdue_view).content.decode()
    assert "grid outage" in page and "<strong>overdue by under an hour</strong>" in page  # the reporting clock
    # Reporting stops the clock even after the deadline.
    incident_mark_reported(incident=incident, actor="s:a", reference="late report")
    assert not incidents_overdue().exists()


@pytest.mark.embedded
def test_concurrent_escalations_of_one_alert_make_one_incident(transactional_db, profiled):
    alert = raise_alert()
    results, errors = [], []
    barrier = threading.Barrier(3)

    def escalate():
        try:
            barrier.wait(timeout=10)
            results.append(incident_escalate(alert=alert, severity="high", category="default", actor="staff:x"))
        except Exception as exc:  # the assertion below names it
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=escalate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert Incident.objects.count() == 1
    assert {incident.pk for incident, _ in results} == {Incident.objects.get().pk}
    assert sorted(created for _, created in results) == [False, False, True]


def test_hostile_input_is_refused_with_stable_codes(profiled, client, make_caller):
    for kwargs, code in (
        ({"severity": "apocalyptic", "category": "default"}, "validation_error"),
        ({"severity": "low", "category": "whatever"}, "validation_error"),
    ):
        with pytest.raises(Exception) as excinfo:
            incident_open(version=profiled, title="t", actor="s:a", **kwargs)
        assert (excinfo.value.status, excinfo.value.code) == (400, code)
    with pytest.raises(Exception) as excinfo:
        incident_open(version=profiled, title="  ", severity="low", category="default", actor="s:a")
    assert excinfo.value.status == 400
    incident = incident_open(
        version=profiled, title="<script>x</script>", severity="low", category="default", actor="a"
    )
    with pytest.raises(Exception) as excinfo:
        incident_note_add(incident=incident, actor="a", text="")
    assert excinfo.value.status == 400
    for bad in ("999999", "abc", "-1", "9" * 40):
        with pytest.raises(Exception) as excinfo:
            incident_get(incident_id=bad)
        assert (excinfo.value.status, excinfo.value.code) == (404, "incident_not_found")
    # A tenant never sees incidents: there is no tenant API for them and the admin is staff-only.
    caller = make_caller("acme")
    assert_problem(client.get(f"/v1/incidents/{incident.pk}", **caller.headers), 404, "not_found")
    page = client.get(reverse("admin:monitoring_incident_changelist"), **caller.headers)
    assert page.status_code == 302 and "<script>x</script>" not in page.content.decode()


def test_admin_opens_and_acts_on_an_incident(admin_client, profiled):
    add = reverse("admin:monitoring_incident_add")
    assert admin_client.get(add).status_code == 200
    data = {"model_version": profiled.pk, "title": "user complaint", "severity": "high", "category": "default"}
    assert admin_client.post(add, data).status_code == 302
    incident = Incident.objects.get()
    assert incident.opened_by == "staff:admin" and incident.snapshot_signature
    changelist = reverse("admin:monitoring_incident_changelist")
    assert admin_client.get(reverse("admin:monitoring_incident_change", args=[incident.pk])).status_code == 200
    steps = [
        ("engage_kill_switch", "stop serving while we look"),
        ("add_note", "called the hospital"),
        ("mark_reported", "MSA-1"),
        ("close_incident", "mislabelled reference data"),
    ]
    for action, text in steps:
        asked = admin_client.post(changelist, {"action": action, "_selected_action": [incident.pk]})
        assert asked.status_code == 200
        admin_client.post(
            changelist, {"action": action, "_selected_action": [incident.pk], "apply": "1", "reason": text}
        )
    incident.refresh_from_db()
    assert (incident.status, incident.authority_reference, incident.root_cause) == (
        "closed",
        "MSA-1",
        "mislabelled reference data",
    )
    assert KillSwitch.objects.get(target="digits", lifted_at__isnull=True).created_by == "staff:admin"
    assert [n.action or n.kind for n in incident.notes.all()] == ["open", "kill_switch", "note", "reported", "closed"]
    # A release without a reason is refused by the form: nothing changes.
    other = incident_open(version=profiled, title="second", severity="low", category="default", actor="s:a")
    admin_client.post(
        changelist, {"action": "release_evidence", "_selected_action": [other.pk], "apply": "1", "reason": ""}
    )
    assert Incident.objects.get(pk=other.pk).status == "open"


def test_escalation_from_the_alert_admin(admin_client, profiled):
    alert = raise_alert()
    changelist = reverse("admin:monitoring_alert_changelist")
    data = {"action": "escalate_selected", "_selected_action": [alert.pk], "apply": "1", "severity": "medium"}
    for _ in range(2):
        admin_client.post(changelist, {**data, "category": "widespread_infringement", "title": ""}, follow=True)
    incident = Incident.objects.get()
    assert (incident.alert, incident.deadline_days, incident.title) == (alert, 2, f"Alert #{alert.pk}: {alert.rule_id}")
    incident_kill_switch(incident=incident, actor="s:a", reason="stop")
    with pytest.raises(Exception) as excinfo:
        incident_kill_switch(incident=incident, actor="s:a", reason="again")
    assert excinfo.value.status == 409
