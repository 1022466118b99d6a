"""What an operator sees of supervision and rollouts: the incident desk, alerts, model cards, a rollout's figures.

Real gunicorn, DEBUG off, Chromium at 1366 px: every page fits, shows what
the operator acts on, and leaves a screenshot under ``var/screenshots/``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from inference.models import ModelVersion
from inference.services import model_version_activate, model_version_register
from inference.services.rollouts import rollout_start
from monitoring.models import Incident
from monitoring.services import incident_escalate, incident_note_add
from tests.browser.conftest import admin_login, shot
from tests.monitoring.test_incidents import raise_alert

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

LISTS = [
    "monitoring/incident",
    "monitoring/alert",
    "monitoring/livewindow",
    "monitoring/monitorresult",
    "monitoring/regulatorbundle",
    "monitoring/webhookendpoint",
    "monitoring/webhookdelivery",
    "inference/modelrollout",
]


def _fits(page) -> tuple[int, int, int]:
    width, visible = page.evaluate(
        "(() => { const r = document.querySelector('.results') || document.documentElement;"
        " return [r.scrollWidth, r.clientWidth]; })()"
    )
    return width, visible, page.evaluate("document.documentElement.scrollWidth")


def test_incident_desk_alerts_model_card_and_rollout_pages(page, superuser, model_store, onnx_bytes, digit_rows):
    stable = model_version_register(
        name="digits", data=onnx_bytes, actor="test", reference=digit_rows[:400], reference_source="held-out rows"
    )
    model_version_activate(version=stable, actor="test")
    canary = model_version_register(name="digits", data=onnx_bytes, actor="test")
    rollout = rollout_start(
        name="digits", version=canary.version, actor="staff:ops", canary_percent=20, reason="try v2 on a fifth"
    )
    alert = raise_alert()  # a drift alert on digits v1
    incident, _ = incident_escalate(alert=alert, severity="high", category="widespread_infringement", actor="staff:ops")
    incident_note_add(incident=incident, actor="staff:ops", text="Saturated scans from one clinic since 09:00.")
    # Three days on: the two-day clock of a widespread infringement has run out.
    Incident.objects.filter(pk=incident.pk).update(
        opened_at=timezone.now() - timedelta(days=3), deadline=timezone.now() - timedelta(days=1)
    )

    admin_login(page, "root", "pw-root-12345")
    too_wide = {}
    for name in LISTS:
        page.goto(f"/admin/{name}/")
        width, visible, page_width = _fits(page)
        if width > visible or page_width > 1366:
            too_wide[name] = (width, visible, page_width)
        shot(page, "list-" + name.replace("/", "-"))
    assert too_wide == {}, too_wide

    page.goto("/admin/monitoring/incident/")
    row = page.inner_text("#result_list tbody tr")
    assert "digits" in row and "high" in row.lower()
    assert "overdue by 1 day" in row and "widespread infringement" in row  # the clock, in words

    page.goto(f"/admin/monitoring/incident/{incident.pk}/change/")
    text = page.inner_text("#content")
    assert "Saturated scans from one clinic" in text and "signature" in text.lower()
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    shot(page, "admin-incident")

    page.goto(f"/admin/inference/modelversion/{ModelVersion.objects.get(name='digits', version=1).pk}/change/")
    text = page.inner_text("#content")
    assert "held-out rows" in text and "intended purpose" in text.lower()
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    shot(page, "admin-model-card")

    page.goto(f"/admin/inference/modelrollout/{rollout.pk}/change/")
    text = page.inner_text("#content")
    assert "20" in text and f"v{canary.version}" in text.replace("version ", "v")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    shot(page, "admin-rollout")
