"""Supervision end to end (issue 17, "Must show"): real gunicorn, real Celery beat and worker, the real broker.

A stream of saturated digits through the production server command, with
two-second monitoring windows: the server's own flusher thread writes the
window, beat's ``monitoring.windows_evaluate_due`` enqueues its judgement,
the worker raises the drift alert.  Escalated to an incident, the alert
freezes the evidence (activating another version is refused) until the
incident is released with a reason; the regulator bundle is built on the
worker and its audit export verifies offline with the shipped verifier,
and fails after one altered byte.  Runs on both legs: PostgreSQL + Redis
broker, and SQLite + filesystem broker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from django.db.models import Max

from audit.models import AuditEvent, SealedBlock
from inference.services import model_version_activate, model_version_register
from monitoring.errors import EvidenceFrozen
from monitoring.models import Alert, LiveWindow, RegulatorBundle
from monitoring.services import incident_bundle_request, incident_escalate, incident_release
from policy.services import policy_create
from tests.support import ROOT, celery_beat, celery_worker, gateway_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded, pytest.mark.e2e]

WINDOW = 2  # seconds: MONITORING_WINDOW_SECONDS of the server and the worker
STREAM_REQUESTS = 5
BATCH = 10


def _wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")


def _verify(root: Path) -> subprocess.CompletedProcess:
    """The shipped offline verifier, in a clean subprocess pinned to the bundle's checkpoint."""
    export = "audit/events.jsonl"
    pin = ("--checkpoint", "audit/checkpoint.json")
    return subprocess.run(
        [sys.executable, "-m", "audit.verify_export", export, f"{export}.manifest.json", *pin],
        cwd=root,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_saturated_stream_alerts_freezes_evidence_and_the_bundle_verifies_offline(
    tmp_path, model_store, onnx_bytes, profiled, make_caller, digit_rows
):
    rule = {
        "id": "drift",
        "type": "monitoring",
        "mode": "enforce",
        "params": {"thresholds": {"feature_psi": 0.5}, "min_instances": 30, "action": "alert"},
    }
    policy_create(name="drift", document=[rule], actor="staff:test", reason="watch digits")
    second = model_version_register(name="digits", data=onnx_bytes, actor="test")
    caller = make_caller()
    env = {
        "MODEL_STORE_DIR": str(model_store),
        "JOBS_DIR": str(tmp_path / "jobs"),
        "INCIDENT_BUNDLE_DIR": str(tmp_path / "bundles"),
        "EXPORT_DIR": str(tmp_path / "exports"),
        "LOG_LEVEL": "WARNING",
        "MONITORING_WINDOW_SECONDS": str(WINDOW),
        # The one gunicorn worker's flusher wakes a second after the boundary; the grace covers it.
        "MONITORING_GRACE_SECONDS": "1",
        "MONITORING_EVALUATE_INTERVAL_SECONDS": "0.5",
        # A seal message expires after one interval: it must outlive the queue's latency on a loaded machine.
        "AUDIT_SEAL_INTERVAL_SECONDS": "2",
        "AUDIT_SEAL_LAG_SECONDS": "0.5",
        # The embedded (filesystem) broker: a worker takes one message per look, by default once a second,
        # fewer than beat sends here. Redis ignores it.
        "CELERY_BROKER_POLLING_SECONDS": "0.05",
    }
    saturated = np.full((BATCH, 64), 16.0).tolist()  # every pixel saturated: far outside the reference
    figures: dict[str, float] = {}
    starting = time.monotonic()
    # Beat and the worker log each task (var/test-celery-*.log), so a slow or lost step can be told apart.
    celery_env = {**env, "LOG_LEVEL": "INFO"}
    with (
        celery_worker(**celery_env) as worker,
        celery_beat(tmp_path / "celerybeat-schedule", **celery_env) as beat,
        gateway_server(workers=1, **env) as base,
    ):
        figures["processes up (s)"] = time.monotonic() - starting
        session = requests.Session()

        def predict(instances: list) -> requests.Response:
            return session.post(
                f"{base}/v1/models/digits/predict",
                headers=caller.http_headers,
                json={"instances": instances, "purpose": "research"},
                timeout=30,
            )

        # Warm-up (loads the model in the worker): its window holds one instance, below min_instances.
        assert predict(digit_rows[:1].tolist()).status_code == 200
        # Start just after a boundary, so the whole stream lands in one window.
        time.sleep(WINDOW - time.time() % WINDOW + 0.05)
        first_sent = time.time()
        for _ in range(STREAM_REQUESTS):
            response = predict(saturated)
            assert response.status_code == 200, response.text
        last_sent, last_mono = time.time(), time.monotonic()
        stream_windows = {int(first_sent // WINDOW) * WINDOW, int(last_sent // WINDOW) * WINDOW}

        alert = _wait_for(
            lambda: Alert.objects.filter(model_version=profiled).select_related("first_result").first(), timeout=30
        )
        figures["last request to alert (s)"] = time.monotonic() - last_mono
        window_end = alert.first_result.window_start.timestamp() + WINDOW
        figures["window close to alert (s)"] = time.time() - window_end
        # Judged right after its own window closed (flusher one second past the boundary, beat every half
        # second), not windows later; the bound leaves room for a loaded machine.
        assert figures["window close to alert (s)"] < 10
        print("supervision e2e: last request to alert", round(figures["last request to alert (s)"], 2), "s")
        # The window was written by the running server's flusher thread (the test process counts nothing,
        # and the worker has not exited): beat found it, the worker judged it.
        window = LiveWindow.objects.get(pk=alert.first_result.window_id)
        assert window.flushes >= 1 and window.model_version_id == profiled.pk
        assert int(window.window_start.timestamp()) in stream_windows
        if len(stream_windows) == 1:
            assert (window.requests, window.instances) == (STREAM_REQUESTS, STREAM_REQUESTS * BATCH)
        assert alert.rule_id.endswith("drift") and alert.status == "open"
        assert alert.measures[0]["measure"] == "feature_psi" and alert.measures[0]["value"] > 0.5

        # Escalated: the evidence is frozen, another version may not be activated until released.
        incident, created = incident_escalate(alert=alert, severity="high", category="default", actor="staff:ops")
        assert created and incident.window_start == window.window_start
        with pytest.raises(EvidenceFrozen) as excinfo:
            model_version_activate(version=second, actor="staff:ops")
        assert (excinfo.value.status, excinfo.value.code) == (409, "evidence_frozen")
        second.refresh_from_db()
        assert second.status == "staged"
        with pytest.raises(Exception, match="reason"):
            incident_release(incident=incident, actor="staff:ops", reason="  ")
        incident = incident_release(incident=incident, actor="staff:ops", reason="authority informed, fix agreed")
        assert model_version_activate(version=second, actor="staff:ops").status == "active"

        # The bundle, built on the worker once beat has sealed the stream's events (inclusion proofs).
        last_request_seq = AuditEvent.objects.filter(event_type="request").aggregate(m=Max("seq"))["m"]
        sealing = time.monotonic()
        _wait_for(lambda: SealedBlock.objects.filter(last_seq__gte=last_request_seq).exists(), timeout=30, interval=0.2)
        figures["waited for the seal (s)"] = time.monotonic() - sealing
        building = time.monotonic()
        bundle = incident_bundle_request(incident=incident, actor="staff:ops")
        bundle = _wait_for(
            lambda: RegulatorBundle.objects.filter(pk=bundle.pk, status__in=["done", "failed"]).first(),
            timeout=60,
            interval=0.1,
        )
        figures["bundle request to done (s)"] = time.monotonic() - building
        stopping = time.monotonic()
        # Told to stop together (each block then waits for its own): stopped one after another they cost
        # several seconds more on a loaded machine.
        for proc in (worker, beat):
            os.killpg(proc.pid, signal.SIGTERM)
    figures["processes stopped (s)"] = time.monotonic() - stopping
    assert bundle.status == "done", bundle.error

    with zipfile.ZipFile(bundle.file_path) as archive:
        archive.extractall(tmp_path / "unpacked")
    root = tmp_path / "unpacked" / f"incident-{incident.pk}"
    monitoring = json.loads((root / "monitoring.json").read_text())
    # The monitoring window that triggered it, as the worker judged it, with the server's counts.
    assert monitoring["alert"]["id"] == alert.pk
    breached = [r for r in monitoring["results"] if r["status"] == "breach"]
    assert breached and breached[0]["window"]["seconds"] == WINDOW
    events = [json.loads(line) for line in (root / "audit/events.jsonl").read_text().splitlines()]
    served = [e for e in events if e["event_type"] == "request"]
    window_start = datetime.fromtimestamp(min(stream_windows), tz=UTC)
    expected = AuditEvent.objects.filter(
        event_type="request", model_name="digits", model_version=1, recorded_at__gte=window_start
    ).count()
    assert len(served) == expected >= 1
    assert all(e["model_version"] == 1 and e["_merkle"]["block"] for e in served)
    ok = _verify(root)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK" in ok.stdout
    # One byte of a served request's event altered (a digit of its latency): the verifier refuses.
    path = root / "audit/events.jsonl"
    data = bytearray(path.read_bytes())
    at = data.index(b'"latency_ms":') + len(b'"latency_ms":')
    data[at] = ord("9") if data[at] != ord("9") else ord("8")
    path.write_bytes(bytes(data))
    tampered = _verify(root)
    assert tampered.returncode != 0 and "FAILED" in tampered.stdout, tampered.stdout + tampered.stderr
    figures["whole test body (s)"] = time.monotonic() - starting
    print("supervision e2e figures:", {k: round(v, 2) for k, v in figures.items()})
