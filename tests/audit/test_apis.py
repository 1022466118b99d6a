"""HTTP: the public signing key, and the staff-only streaming export with its manifest."""

from __future__ import annotations

import base64
import json

import pytest
from django.contrib.auth.models import Group, Permission

from audit.blocks import header_bytes, load_public_key, public_key_fingerprint, verify_signature
from audit.models import AuditEvent, AuditExport, SealedBlock
from audit.selectors import ExportFilters
from audit.services import audit_export_stream
from audit.services.compliance import COMPLIANCE_GROUP_NAME
from audit.verify_export import verify_export
from tests.support import assert_problem

from .conftest import trusted_pem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded, pytest.mark.urls("tests.audit.urls")]


@pytest.fixture
def exporter(django_user_model):
    """A staff user in the compliance officer group."""
    user = django_user_model.objects.create_user(username="carol", password="pw-carol-123", is_staff=True)
    user.groups.add(Group.objects.get(name=COMPLIANCE_GROUP_NAME))
    return user


@pytest.fixture
def plain_staff(django_user_model):
    """Staff, but without the export permission."""
    user = django_user_model.objects.create_user(username="dave", password="pw-dave-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    return user


def test_public_key_is_published_without_authentication(api_client, sealed):
    response = api_client.get("/v1/audit/public-key")
    assert response.status_code == 200
    body = response.json()
    key = load_public_key(body["public_key_pem"])
    assert body["algorithm"] == "Ed25519"
    assert body["key_id"] == public_key_fingerprint(key)
    assert body["fingerprint"] == f"SHA256:{body['key_id']}"
    block = SealedBlock.objects.get(number=1)
    assert verify_signature(key, header_bytes(block.header()), block.signature)


def test_export_requires_staff_with_export_permission(api_client, plain_staff, sealed):
    anonymous = api_client.get("/v1/audit/export")
    assert_problem(anonymous, 401, "staff_authentication_required")
    assert anonymous["WWW-Authenticate"].startswith("Session")
    api_client.force_login(plain_staff)
    assert_problem(api_client.get("/v1/audit/export"), 403, "forbidden")
    assert not AuditEvent.objects.filter(event_type=AuditEvent.Type.EXPORT).exists()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_streams_and_its_manifest_verifies(api_client, exporter, sealed, fmt, tmp_path):
    api_client.force_login(exporter)
    response = api_client.get("/v1/audit/export", {"format": fmt, "tenant": "globex"})
    assert response.status_code == 200
    assert response.streaming
    body = b"".join(response.streaming_content)
    export_id = int(response["X-Audit-Export-Id"])
    assert f"audit-export-{export_id}.{fmt}" in response["Content-Disposition"]
    export = AuditExport.objects.get(pk=export_id)
    assert export.status == AuditExport.Status.DONE and export.requested_by == "staff:carol"
    manifest_response = api_client.get(f"/v1/audit/exports/{export_id}/manifest")
    assert manifest_response.status_code == 200
    manifest = manifest_response.json()
    assert manifest["row_count"] == sum(1 for e in sealed if e.tenant_slug == "globex")
    (tmp_path / "e").write_bytes(body)
    (tmp_path / "m").write_text(json.dumps(manifest))
    assert verify_export(tmp_path / "e", tmp_path / "m", public_key_pem=trusted_pem()).ok
    event = AuditEvent.objects.get(seq=manifest["export_event_seq"])
    assert event.actor == "staff:carol" and event.detail["source"] == "api"


def test_export_refuses_basic_auth(api_client, exporter, sealed):
    """HTTP Basic would be a password oracle outside the admin's lockout and second factor."""
    token = base64.b64encode(b"carol:pw-carol-123").decode()
    response = api_client.get("/v1/audit/export", HTTP_AUTHORIZATION=f"Basic {token}")
    assert_problem(response, 401, "staff_authentication_required")


def test_bad_export_parameters_are_problems(api_client, exporter, sealed):
    api_client.force_login(exporter)
    assert_problem(api_client.get("/v1/audit/export", {"format": "xml"}), 400, "validation_error")
    body = assert_problem(api_client.get("/v1/audit/export", {"since": "yesterday"}), 400, "invalid_export_filter")
    assert "since" in body["detail"]
    assert_problem(api_client.get("/v1/audit/export", {"event_type": "nope"}), 400, "invalid_export_filter")
    # Well-formed but impossible dates and times: Django's parsers raise ValueError for these.
    for bad in ("2024-02-30", "2024-01-01T25:00:00", "2024-13-01T00:00:00Z"):
        body = assert_problem(api_client.get("/v1/audit/export", {"since": bad}), 400, "invalid_export_filter")
        assert "since" in body["detail"] and bad in body["detail"]
    body = assert_problem(api_client.get("/v1/audit/export", {"until": "2024-02-30"}), 400, "invalid_export_filter")
    assert "until" in body["detail"]


def test_manifest_of_unknown_or_unfinished_export(api_client, exporter):
    api_client.force_login(exporter)
    assert_problem(api_client.get("/v1/audit/exports/999/manifest"), 404, "audit_export_not_found")
    pending = AuditExport.objects.create(requested_by="staff:carol", format="csv")
    assert_problem(api_client.get(f"/v1/audit/exports/{pending.pk}/manifest"), 409, "audit_export_not_ready")


def test_interrupted_download_marks_the_export_failed(sealed):
    export, chunks = audit_export_stream(filters=ExportFilters(), format="csv", actor="staff:carol")
    next(chunks)
    chunks.close()  # what the WSGI server does when the client goes away
    export.refresh_from_db()
    assert export.status == AuditExport.Status.FAILED
    assert "interrupted" in export.error


def test_checkpoints_are_published_without_authentication(api_client, sealed):
    from audit.checkpoints import document_problem
    from audit.services.checkpoints import checkpoint_log

    key = load_public_key(trusted_pem())
    keys = {public_key_fingerprint(key): key}
    latest = api_client.get("/v1/audit/checkpoints")
    assert latest.status_code == 200
    assert latest.json()["number"] == 3 and document_problem(latest.json(), keys) is None
    second = api_client.get("/v1/audit/checkpoints/2").json()
    assert second == json.loads(checkpoint_log().checkpoint_path(1, 2).read_text())
    assert api_client.get("/v1/audit/checkpoints/2?epoch=1").json() == second
    assert_problem(api_client.get("/v1/audit/checkpoints/9"), 404, "audit_checkpoint_not_found")
    assert_problem(api_client.get("/v1/audit/checkpoints/2?epoch=7"), 404, "audit_checkpoint_not_found")
    assert_problem(api_client.get("/v1/audit/checkpoints?epoch=x"), 404, "audit_checkpoint_not_found")


def test_no_checkpoint_yet_is_404(api_client, db):
    assert_problem(api_client.get("/v1/audit/checkpoints"), 404, "audit_checkpoint_not_found")
