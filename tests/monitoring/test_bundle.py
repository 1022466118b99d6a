"""Regulator bundles: built on the worker path (eager here), verified offline by the shipped verifier."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from audit.services import audit_seal
from monitoring.models import RegulatorBundle
from monitoring.services import incident_bundle_build, incident_bundle_request, incident_note_add, incident_open
from tests.support import assert_problem

# embedded: the audit export reads rows differently on PostgreSQL and SQLite; both must verify.
pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _bundle_settings(settings, tmp_path):
    settings.AUDIT_SEAL_LAG_SECONDS = 0
    settings.AUDIT_SEAL_BLOCK_SIZE = 5
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path / "checkpoints")
    settings.AUDIT_CHECKPOINT_SINKS = []
    settings.EXPORT_DIR = str(tmp_path / "exports")
    settings.INCIDENT_BUNDLE_DIR = str(tmp_path / "bundles")


@pytest.fixture
def incident(profiled, client, make_caller, digit_rows):
    """Three served requests to digits v1, then an incident on it, the trail sealed."""
    caller = make_caller("acme")
    for row in digit_rows[:3]:
        body = json.dumps({"instances": [row.tolist()], "purpose": "research"})
        response = client.post(
            "/v1/models/digits/predict", data=body, content_type="application/json", **caller.headers
        )
        assert response.status_code == 200
    opened = incident_open(version=profiled, title="misread scans", severity="high", category="default", actor="s:a")
    incident_note_add(incident=opened, actor="s:a", text="first report drafted")
    audit_seal()
    return opened


def verifier(directory: Path, *pin: str) -> subprocess.CompletedProcess:
    export = "audit/events.jsonl"
    return subprocess.run(
        [sys.executable, "-m", "audit.verify_export", export, f"{export}.manifest.json", *pin],
        cwd=directory,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_bundle_verifies_offline_and_one_altered_byte_fails(
    incident, tmp_path, celery_eager, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):  # the task is enqueued on commit, run eagerly
        bundle = incident_bundle_request(incident=incident, actor="staff:ops")
    bundle.refresh_from_db()
    assert bundle.status == "done", bundle.error
    with zipfile.ZipFile(bundle.file_path) as archive:
        archive.extractall(tmp_path / "unpacked")
    root = tmp_path / "unpacked" / f"incident-{incident.pk}"
    manifest = json.loads((root / "manifest.json").read_text())
    members = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["members"]) == members
    assert {
        "incident.json",
        "model-card.json",
        "model-card.html",
        "policies.json",
        "monitoring.json",
        "audit/events.jsonl",
        "audit/checkpoint.json",
    } <= members
    for name, digest in manifest["members"].items():
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest
    record = json.loads((root / "incident.json").read_text())
    assert [entry["action"] or entry["kind"] for entry in record["timeline"]] == ["open", "note"]
    events = [json.loads(line) for line in (root / "audit/events.jsonl").read_text().splitlines()]
    requests = [e for e in events if e["event_type"] == "request"]
    assert len(requests) == 3 and all(e["model_version"] == 1 and e["_merkle"]["block"] for e in requests)
    assert {e["model_name"] for e in events} == {"digits"}
    ok = verifier(root, "--checkpoint", "audit/checkpoint.json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK" in ok.stdout
    # One byte of one request event changed (a digit of its latency): the verifier refuses.
    path = root / "audit/events.jsonl"
    data = bytearray(path.read_bytes())
    at = data.index(b'"latency_ms":') + len(b'"latency_ms":')
    data[at] = ord("9") if data[at] != ord("9") else ord("8")
    path.write_bytes(bytes(data))
    failed = verifier(root, "--checkpoint", "audit/checkpoint.json")
    assert failed.returncode == 1 and "FAILED" in failed.stdout
    # The build is idempotent: a finished bundle is not rebuilt.
    assert incident_bundle_build(bundle_id=bundle.pk).sha256 == bundle.sha256


def test_command_and_admin_download(incident, tmp_path, admin_client):
    output = tmp_path / "out" / "bundle.zip"
    call_command("incident_bundle", str(incident.pk), "--output", str(output))
    with zipfile.ZipFile(output) as archive:
        assert f"incident-{incident.pk}/VERIFY.txt" in archive.namelist()
    bundle = RegulatorBundle.objects.get()
    response = admin_client.get(reverse("admin:monitoring_regulatorbundle_download", args=[bundle.pk]))
    assert response.status_code == 200 and b"".join(response.streaming_content) == Path(bundle.file_path).read_bytes()
    accept = {"HTTP_ACCEPT": "application/problem+json"}
    for bad in ("999999", "abc"):
        url = reverse("admin:monitoring_regulatorbundle_download", args=[bad])
        assert_problem(admin_client.get(url, **accept), 404, "regulator_bundle_not_found")
    pending = RegulatorBundle.objects.create(incident=incident, requested_by="s:a")
    url = reverse("admin:monitoring_regulatorbundle_download", args=[pending.pk])
    assert_problem(admin_client.get(url, **accept), 409, "regulator_bundle_not_ready")
    with pytest.raises(Exception, match="incident"):
        call_command("incident_bundle", "nope", "--output", str(output))
    assert admin_client.get(reverse("admin:monitoring_regulatorbundle_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:monitoring_incident_change", args=[incident.pk])).status_code == 200


def test_a_broker_outage_fails_the_bundle_visibly(incident, monkeypatch, django_capture_on_commit_callbacks):
    from celery import current_app

    def down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(current_app.tasks["monitoring.incident_bundle_build"], "delay", down)
    with django_capture_on_commit_callbacks(execute=True):
        bundle = incident_bundle_request(incident=incident, actor="staff:ops")
    bundle.refresh_from_db()
    assert bundle.status == "failed" and "queue is unavailable" in bundle.error
