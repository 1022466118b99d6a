"""Receipts: a tenant fetches one for its own request, verifies it offline, and an edited byte fails."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from django.core.management import call_command

from audit.models import AuditEvent
from audit.verify_receipt import verify_receipt
from gateway.client import MaaSClient
from tests.support import ROOT, assert_problem

from .conftest import trusted_pem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _receipt_of(client, headers, request_id):
    return client.get(f"/v1/audit/receipts/{request_id}", **headers)


def _a_request(client, headers) -> str:
    """One real, audited tenant request; returns its request id."""
    response = client.get("/v1/keys", **headers)
    assert response.status_code == 200
    return response["X-Request-ID"]


def test_receipt_is_pending_until_sealed_then_verifies_offline(client, make_caller, tmp_path):
    headers = make_caller("acme").headers
    request_id = _a_request(client, headers)
    pending = _receipt_of(client, headers, request_id)
    assert pending.status_code == 202
    assert int(pending["Retry-After"]) >= 1
    assert pending.json() == {"status": "pending", "request_id": request_id, "retry_after": int(pending["Retry-After"])}

    call_command("seal_audit", stdout=io.StringIO())
    response = _receipt_of(client, headers, request_id)
    assert response.status_code == 200
    receipt = response.json()
    assert receipt["event"]["request_id"] == request_id and receipt["event"]["tenant_slug"] == "acme"
    assert receipt["checkpoint"]["number"] == receipt["block"]["header"]["number"]
    report = verify_receipt(receipt, public_key_pem=trusted_pem())
    assert report.ok, report.problems
    assert report.seq == receipt["event"]["seq"]
    assert MaaSClient.verify_receipt(receipt, public_key_pem=trusted_pem()).ok

    # The shipped command-line verifier, Django-free, with nothing but the public key.
    key_file, receipt_file = tmp_path / "key.pem", tmp_path / "receipt.json"
    key_file.write_text(trusted_pem())
    receipt_file.write_bytes(response.content)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "audit.verify_receipt", str(receipt_file), "--public-key", str(key_file)]
    ok = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stdout + ok.stderr
    check = "import sys, audit.verify_receipt; sys.exit(any(m.split('.')[0] == 'django' for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", check], env=env, cwd=tmp_path).returncode == 0

    # One edited byte: the recorded status code of the request.
    text = response.content.decode()
    edited = text.replace('"http_status":200', '"http_status":201', 1)
    assert edited != text
    receipt_file.write_text(edited)
    failed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert failed.returncode == 1 and "Merkle root" in failed.stdout, failed.stdout


@pytest.mark.parametrize(
    ("where", "mutate", "words"),
    [
        ("event", lambda r: r["event"].update(decision="deny"), "Merkle root"),
        ("proof", lambda r: r["inclusion"]["proof"].__setitem__(0, "00" * 32), "Merkle root"),
        ("block", lambda r: r["block"]["header"].update(count=r["block"]["header"]["count"] + 1), "hash"),
        ("checkpoint", lambda r: r["checkpoint"].update(last_seq=r["checkpoint"]["last_seq"] + 1), "checkpoint"),
        ("request", lambda r: r.update(request_id="someone-else"), "not this receipt"),
    ],
)
def test_any_edit_to_a_receipt_fails(client, make_caller, where, mutate, words):
    headers = make_caller("acme").headers
    request_id = _a_request(client, headers)
    _a_request(client, headers)  # a second leaf, so the proof is not empty
    call_command("seal_audit", stdout=io.StringIO())
    receipt = _receipt_of(client, headers, request_id).json()
    assert verify_receipt(receipt, public_key_pem=trusted_pem()).ok
    mutate(receipt)
    report = verify_receipt(receipt, public_key_pem=trusted_pem())
    assert not report.ok
    assert any(words in p for p in report.problems), report.problems


def test_receipt_needs_the_trusted_key(client, make_caller):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    headers = make_caller("acme").headers
    request_id = _a_request(client, headers)
    call_command("seal_audit", stdout=io.StringIO())
    receipt = _receipt_of(client, headers, request_id).json()
    other = Ed25519PrivateKey.generate().public_key()
    other_pem = other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert not verify_receipt(receipt, public_key_pem=other_pem).ok
    assert not verify_receipt(receipt, public_key_pem=None).ok


def test_another_tenants_or_an_unknown_request_is_404_and_the_lookup_is_audited(client, make_caller):
    acme = make_caller("acme").headers
    globex = make_caller("globex").headers
    request_id = _a_request(client, acme)
    call_command("seal_audit", stdout=io.StringIO())
    assert_problem(_receipt_of(client, globex, request_id), 404, "audit_receipt_not_found")
    assert_problem(_receipt_of(client, acme, "no-such-request"), 404, "audit_receipt_not_found")
    assert_problem(client.get(f"/v1/audit/receipts/{request_id}"), 401, "missing_api_key")
    lookups = AuditEvent.objects.filter(action="audit.receipt").order_by("seq")
    assert [(e.tenant_slug, e.http_status, e.error_code) for e in lookups] == [
        ("globex", 404, "audit_receipt_not_found"),
        ("acme", 404, "audit_receipt_not_found"),
        ("", 401, "missing_api_key"),  # like every API-key endpoint, the refused attempt is on record too
    ]
    assert _receipt_of(client, acme, request_id).status_code == 200
    assert AuditEvent.objects.filter(action="audit.receipt", http_status=200, tenant_slug="acme").exists()


def test_receipt_json_round_trips_through_a_file(client, make_caller, tmp_path):
    headers = make_caller("acme").headers
    request_id = _a_request(client, headers)
    call_command("seal_audit", stdout=io.StringIO())
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(_receipt_of(client, headers, request_id).json(), indent=2))
    assert verify_receipt(json.loads(path.read_text()), public_key_pem=trusted_pem()).ok
