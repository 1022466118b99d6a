"""Django admin for rollouts: start, promote and roll back through the audited services; figures side by side."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from inference.models import ModelRollout, ModelVersion
from inference.services import model_version_activate, model_version_register
from tests import onnx_models

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def iris(model_store):
    """``iris`` v1 active, v2 and v3 staged (the tiny classifier of tests/onnx_models.py)."""

    def register():
        return model_version_register(
            name="iris", data=onnx_models.classifier(), actor="test", labels=onnx_models.IRIS_LABELS, value_max=10.0
        )

    model_version_activate(version=register(), actor="test")
    return [register(), register()]


def start(client, **fields):
    data = {"name": "iris", "version": 2, "mode": "canary", "canary_percent": "25", "reason": "try v2", **fields}
    return client.post(reverse("admin:inference_modelrollout_start"), data, follow=True)


def test_start_shows_figures_and_refuses_bad_input(admin_client, iris):
    page = admin_client.get(reverse("admin:inference_modelrollout_changelist"))
    assert page.status_code == 200 and "Start or change a rollout" in page.content.decode()
    assert "must be above 0" in start(admin_client, canary_percent="250").content.decode()
    assert "has no version 9" in start(admin_client, version=9).content.decode()
    assert not ModelRollout.objects.exists()
    response = start(admin_client)
    content = response.content.decode()
    assert response.status_code == 200 and "updated" in content
    assert "agreement with stable" in content and "<th>v1</th><th>v2</th>" in content
    start(admin_client, version=3, mode="shadow", canary_percent="")
    rollout = ModelRollout.objects.get()
    assert (rollout.canary_version, rollout.canary_percent, rollout.shadow_versions) == (2, 25.0, [3])
    assert set(AuditEvent.objects.filter(action__startswith="model.rollout").values_list("actor", flat=True)) == {
        "staff:admin"
    }


def test_promote_and_rollback_actions_ask_for_a_reason(admin_client, iris):
    start(admin_client)
    rollout = ModelRollout.objects.get()
    url = reverse("admin:inference_modelrollout_changelist")
    question = admin_client.post(url, {"action": "rollback_selected", "_selected_action": [rollout.pk]})

    assert "reason" in question.content.decode()
    assert ModelRollout.objects.get().state == "active"
    done = admin_client.post(
        url,
        {"action": "rollback_selected", "_selected_action": [rollout.pk], "apply": "1", "reason": "bad figures"},
        follow=True,
    )
    assert f"rollout #{rollout.pk} rolled back" in done.content.decode().lower()
    assert ModelRollout.objects.get().end_reason == "bad figures"
    start(admin_client)
    second = ModelRollout.objects.get(state="active")
    admin_client.post(
        url, {"action": "promote_selected", "_selected_action": [second.pk], "apply": "1", "reason": "good"}
    )
    assert ModelVersion.objects.get(name="iris", status="active").version == 2
    assert AuditEvent.objects.filter(action="model.rollout.promote", actor="staff:admin").exists()
