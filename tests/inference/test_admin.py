"""Django admin: lifecycle actions go through the audited services; training is only enqueued."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from inference.admin import CARD_TEXT_FIELDS
from inference.models import ModelVersion, TrainingRun
from inference.tasks import train_model_task

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def staff(admin_client):
    return admin_client


def _action(client, action: str, *versions: ModelVersion, reason: str | None = "because"):
    """Run an admin action; consequential ones are confirmed with ``reason`` (``None``: stop at the question)."""
    data = {"action": action, "_selected_action": [v.pk for v in versions]}
    if reason is not None:
        data.update(apply="1", reason=reason)
    return client.post(reverse("admin:inference_modelversion_changelist"), data, follow=True)


def test_changelist_and_detail_render(staff, register):
    version = register(activate=True)
    page = staff.get(reverse("admin:inference_modelversion_changelist"))
    assert page.status_code == 200
    content = page.content.decode()
    assert version.sha256[:12] in content and "active" in content
    detail = staff.get(reverse("admin:inference_modelversion_change", args=[version.pk]))
    assert detail.status_code == 200 and "data_fingerprint" not in detail.content.decode()
    assert "pixels" in detail.content.decode()  # the signature, read-only
    assert staff.get(reverse("admin:inference_modelversion_add")).status_code == 403


def test_activate_and_rollback_actions_are_audited(staff, register):
    first = register(activate=True)
    second = register()
    response = _action(staff, "activate_selected", second)
    assert "Activated digits@2" in response.content.decode()
    assert ModelVersion.objects.get(status="active").pk == second.pk
    response = _action(staff, "rollback_selected", second)
    assert "Rolled back digits to digits@1" in response.content.decode()
    assert ModelVersion.objects.get(status="active").pk == first.pk
    actors = set(
        AuditEvent.objects.filter(action__in=["model.activate", "model.rollback"]).values_list("actor", flat=True)
    )
    assert actors == {"test", "staff:admin"}


def test_activate_action_refuses_two_versions_of_one_model(staff, register):
    first, second = register(), register()
    response = _action(staff, "activate_selected", first, second)
    assert "at most one version per model" in response.content.decode()
    assert not ModelVersion.objects.filter(status="active").exists()


def test_retire_action_reports_refusals(staff, register):
    active = register(activate=True)
    staged = register()
    content = _action(staff, "retire_selected", active, staged).content.decode()
    assert "Retired digits@2" in content and "is active; activate another version" in content
    assert ModelVersion.objects.get(pk=staged.pk).status == "retired"


def test_governance_edit_goes_through_the_service(staff, register):
    version = register(activate=True)
    change = reverse("admin:inference_modelversion_change", args=[version.pk])
    edit = {"risk_tier": "high", "region": "cn", "model_card": "Updated card."}
    page = staff.get(change).content.decode()
    # No per-class metrics stated yet: an empty box, not the word "null".
    assert re.search(r'<textarea name="card_metrics_per_class"[^>]*>\s*</textarea>', page), page
    # An active version cannot become high-risk with an incomplete model card (EU AI Act Art. 13).
    refused = staff.post(change, edit, follow=True)
    assert refused.status_code == 200 and "model card lacks" in refused.content.decode()
    version.refresh_from_db()
    assert version.risk_tier == "limited"
    card = {f"card_{key}": f"stated {key}" for key in CARD_TEXT_FIELDS}
    card["card_metrics_per_class"] = '{"0": {"recall": 0.99}}'
    response = staff.post(change, edit | card, follow=True)
    assert response.status_code == 200
    version.refresh_from_db()
    assert (version.risk_tier, version.region, version.model_card) == ("high", "cn", "Updated card.")
    assert version.card["risk_rationale"] == "stated risk_rationale"
    event = AuditEvent.objects.get(action="model.update")
    assert event.actor == "staff:admin" and event.detail["after"]["risk_tier"] == "high"
    download = staff.get(reverse("admin:inference_modelversion_card", args=[version.pk, "html"]))
    assert download.status_code == 200 and "stated intended_purpose" in download.content.decode()
    assert "attachment" in download["Content-Disposition"]


def test_starting_training_from_admin_only_enqueues(staff, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(train_model_task, "delay", lambda run_id: sent.append(run_id))
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(
            reverse("admin:inference_trainingrun_add"),
            {
                "model_name": "digits",
                "epochs": 5,
                "batch_size": 32,
                "seed": 7,
                "activate": "on",
                "region": "eu",
                "risk_tier": "limited",
            },
            follow=True,
        )
    assert response.status_code == 200
    run = TrainingRun.objects.get()
    assert sent == [run.pk]
    assert (run.status, run.epochs, run.seed, run.activate, run.requested_by) == ("queued", 5, 7, True, "staff:admin")
    assert "queued" in response.content.decode()
    assert not ModelVersion.objects.exists()  # nothing trained in the web process
    detail = staff.get(reverse("admin:inference_trainingrun_change", args=[run.pk]))
    assert detail.status_code == 200 and "progress" in detail.content.decode()


def test_start_again_action_queues_a_copy(staff, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(train_model_task, "delay", lambda run_id: sent.append(run_id))
    original = TrainingRun.objects.create(model_name="digits", epochs=3, requested_by="staff:bob", status="failed")
    with django_capture_on_commit_callbacks(execute=True):
        staff.post(
            reverse("admin:inference_trainingrun_changelist"),
            {"action": "start_again", "_selected_action": [original.pk]},
        )
    copy = TrainingRun.objects.exclude(pk=original.pk).get()
    assert (copy.epochs, copy.status, copy.requested_by) == (3, "queued", "staff:admin") and sent == [copy.pk]


def test_activation_asks_for_a_reason_and_warns_about_lower_accuracy(staff, register):
    first = register(activate=True)
    ModelVersion.objects.filter(pk=first.pk).update(metrics={"accuracy": 0.97})
    second = register()
    ModelVersion.objects.filter(pk=second.pk).update(metrics={"accuracy": 0.91})
    question = _action(staff, "activate_selected", second, reason=None).content.decode()
    assert "lower recorded accuracy (0.9100) than the active digits@1 (0.9700)" in question
    assert 'name="reason"' in question
    assert ModelVersion.objects.get(pk=first.pk).status == "active"  # asking is not doing
    _action(staff, "activate_selected", second, reason="")
    assert ModelVersion.objects.get(pk=first.pk).status == "active"  # no reason, no change
    _action(staff, "activate_selected", second, reason="canary passed")
    assert ModelVersion.objects.get(pk=second.pk).status == "active"
    event = AuditEvent.objects.filter(action="model.activate", actor="staff:admin").get()
    assert event.detail["reason"] == "canary passed"


def test_retirement_asks_for_a_reason_recorded_with_the_actor(staff, register):
    register(activate=True)
    staged = register()
    assert b'name="reason"' in _action(staff, "retire_selected", staged, reason=None).content
    assert ModelVersion.objects.get(pk=staged.pk).status == "staged"
    _action(staff, "retire_selected", staged, reason="superseded")
    event = AuditEvent.objects.get(action="model.retire")
    assert event.actor == "staff:admin" and event.detail["reason"] == "superseded"
