"""End to end: a real gunicorn worker counts a shifted stream and flush it outside the request; beat judges it."""

from __future__ import annotations

import numpy as np
import pytest
import requests
from django.db.models import Sum

from monitoring.models import LiveWindow, MonitorResult
from monitoring.services import window_evaluate
from policy.models import KillSwitch
from policy.services import policy_create
from tests.support import gateway_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded, pytest.mark.e2e]


def test_saturated_inputs_through_real_workers_breach_drift_for_that_version(
    settings, tmp_path, model_store, profiled, make_caller
):
    rule = {
        "id": "drift",
        "type": "monitoring",
        "mode": "enforce",
        "params": {"thresholds": {"feature_psi": 0.5}, "min_instances": 30, "action": "kill_switch"},
    }
    policy_create(name="drift", document=[rule], actor="staff:test", reason="watch digits")
    caller = make_caller()
    saturated = np.full((10, 64), 16.0).tolist()  # every pixel saturated
    env = {"MODEL_STORE_DIR": str(model_store), "LOG_LEVEL": "WARNING", "MONITORING_WINDOW_SECONDS": "10"}
    with gateway_server(workers=1, **env) as base:
        for _ in range(8):
            response = requests.post(
                f"{base}/v1/models/digits/predict",
                headers=caller.http_headers,
                json={"instances": saturated, "purpose": "research"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
    # Leaving the block stopped the worker: its flusher thread and its exit flush wrote every count.
    windows = LiveWindow.objects.filter(model_version=profiled)
    totals = windows.aggregate(requests=Sum("requests"), instances=Sum("instances"))
    assert totals == {"requests": 8, "instances": 80}
    assert sum(w.flushes for w in windows) >= 1
    # Ten-second windows: the stream may straddle a boundary, and then the fuller window holds at least 40.
    fullest = max(windows, key=lambda w: w.instances)
    result = window_evaluate(window_id=fullest.pk)
    assert result.status == MonitorResult.Status.BREACH
    assert result.measures["feature_psi"] > 0.5
    assert KillSwitch.objects.filter(target_type="model", target="digits", lifted_at__isnull=True).exists()
