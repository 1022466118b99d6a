"""The monitoring admin: windows, results and alerts render; closing an alert asks for a note."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse

from monitoring.live import LiveStats, batch_counts
from monitoring.models import Alert
from monitoring.selectors import live_bins_get
from monitoring.services import live_window_merge, window_evaluate
from policy.services import policy_create

pytestmark = pytest.mark.django_db


def test_pages_render_and_an_alert_is_closed_with_a_note(admin_client, profiled):
    rule = {"id": "drift", "type": "monitoring", "mode": "enforce", "params": {"thresholds": {"feature_psi": 0.5}}}
    policy_create(name="drift", document=[rule], actor="staff:test", reason="watch")
    bins = live_bins_get(name="digits", version=1)
    stats = LiveStats()
    batch = batch_counts(bins=bins, features=np.full((120, 64), 16.0), probabilities=np.full((120, 10), 0.1))
    stats.add_batch(name="digits", version=1, bins=bins, batch=batch, now=1_000_000)
    ((key, counts),) = stats.drain()
    window = live_window_merge(model_name="digits", version=1, window_start=key[2], counts=counts.as_record())
    result = window_evaluate(window_id=window.pk)
    alert = Alert.objects.get()
    for name, pk in (("livewindow", window.pk), ("monitorresult", result.pk), ("alert", alert.pk)):
        assert admin_client.get(reverse(f"admin:monitoring_{name}_changelist")).status_code == 200
        assert admin_client.get(reverse(f"admin:monitoring_{name}_change", args=[pk])).status_code == 200
    changelist = reverse("admin:monitoring_alert_changelist")
    asked = admin_client.post(changelist, {"action": "close_selected", "_selected_action": [alert.pk]})
    assert asked.status_code == 200 and "reason" in asked.content.decode()
    data = {"action": "close_selected", "_selected_action": [alert.pk], "apply": "1", "reason": "scanner replaced"}
    admin_client.post(changelist, data, follow=True)
    alert.refresh_from_db()
    assert (alert.status, alert.close_note, alert.closed_by) == ("closed", "scanner replaced", "staff:admin")
