"""Admin: audit records are read-only; exports download or run in the background; retention and holds are audited."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from audit.models import AuditEvent, AuditExport, LegalHold, SealedBlock, TenantRetention
from audit.services.compliance import COMPLIANCE_GROUP_NAME
from audit.verify_export import verify_export
from tests.support import assert_problem

from .conftest import trusted_pem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded, pytest.mark.urls("tests.audit.urls")]

MODELS = ["auditevent", "sealedblock", "purgetombstone", "auditexport", "tenantretention", "legalhold"]


@pytest.fixture
def officer_client(client, django_user_model):
    user = django_user_model.objects.create_user(username="olga", password="pw-olga-123", is_staff=True)
    user.groups.add(Group.objects.get(name=COMPLIANCE_GROUP_NAME))
    client.force_login(user)
    return client


@pytest.mark.parametrize("model", MODELS)
def test_changelists_render(admin_client, sealed, model):
    assert admin_client.get(f"/admin/audit/{model}/").status_code == 200


@pytest.mark.parametrize("model", ["auditevent", "sealedblock", "purgetombstone", "auditexport"])
def test_audit_records_cannot_be_added_changed_or_deleted(admin_client, sealed, model):
    assert admin_client.get(f"/admin/audit/{model}/add/").status_code == 403


def test_event_detail_is_read_only(admin_client, sealed):
    event = sealed[0]
    url = f"/admin/audit/auditevent/{event.seq}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert admin_client.post(url, {"http_status": 500}).status_code == 403
    assert admin_client.post(f"/admin/audit/auditevent/{event.seq}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.get(seq=event.seq).http_status == 200
    block = SealedBlock.objects.get(number=1)
    assert admin_client.get(f"/admin/audit/sealedblock/{block.pk}/change/").status_code == 200


def test_officer_sees_the_trail_and_the_export_link(officer_client, sealed):
    page = officer_client.get("/admin/audit/auditevent/")
    assert page.status_code == 200 and b"/admin/audit/auditevent/export/" in page.content
    assert officer_client.get("/admin/audit/tenantretention/add/").status_code == 403
    assert officer_client.get("/admin/audit/legalhold/add/").status_code == 403


def test_small_export_is_written_at_once_and_links_file_and_manifest(officer_client, sealed, tmp_path):
    form = officer_client.get("/admin/audit/auditevent/export/")
    assert form.status_code == 200 and b'type="datetime-local"' in form.content and b"Exclusive" in form.content
    response = officer_client.post("/admin/audit/auditevent/export/", {"format": "jsonl", "tenant": "globex"})
    assert response.status_code == 302
    export = AuditExport.objects.get()
    assert export.status == AuditExport.Status.DONE
    page = officer_client.get(response["Location"]).content.decode()
    file_url = f"/admin/audit/auditexport/{export.pk}/download/"
    assert file_url in page and f"/admin/audit/auditexport/{export.pk}/manifest/" in page and "is ready" in page
    (tmp_path / "f").write_bytes(b"".join(officer_client.get(file_url).streaming_content))
    (tmp_path / "fm").write_text(json.dumps(export.manifest))
    assert verify_export(tmp_path / "f", tmp_path / "fm", public_key_pem=trusted_pem()).ok


def test_export_form_refuses_unknown_tenant_and_model(officer_client, sealed):
    response = officer_client.post("/admin/audit/auditevent/export/", {"format": "csv", "tenant": "acmee"})
    assert response.status_code == 200 and "No tenant &#x27;acmee&#x27;" in response.content.decode()
    response = officer_client.post("/admin/audit/auditevent/export/", {"format": "csv", "model": "nope"})
    assert "No model &#x27;nope&#x27;" in response.content.decode()
    assert not AuditExport.objects.exists()


def test_small_export_can_still_stream_directly(officer_client, sealed, tmp_path):
    response = officer_client.post(
        "/admin/audit/auditevent/export/", {"format": "jsonl", "tenant": "globex", "stream": "1"}
    )
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content)
    export = AuditExport.objects.get(pk=int(response["X-Audit-Export-Id"]))
    assert export.status == AuditExport.Status.DONE and export.source == "admin"
    (tmp_path / "e").write_bytes(body)
    (tmp_path / "m").write_text(json.dumps(export.manifest))
    assert verify_export(tmp_path / "e", tmp_path / "m", public_key_pem=trusted_pem()).ok
    manifest = officer_client.get(f"/admin/audit/auditexport/{export.pk}/manifest/")
    assert manifest.status_code == 200 and manifest.json()["sha256"] == export.sha256


def test_manifest_of_unknown_or_unfinished_export_is_a_problem(officer_client, django_user_model):
    as_json = {"HTTP_ACCEPT": "application/json"}
    assert_problem(
        officer_client.get("/admin/audit/auditexport/999/manifest/", **as_json), 404, "audit_export_not_found"
    )
    pending = AuditExport.objects.create(requested_by="staff:olga", format="csv")
    url = f"/admin/audit/auditexport/{pending.pk}/manifest/"
    assert_problem(officer_client.get(url, **as_json), 409, "audit_export_not_ready")
    # A person in the admin gets the same answer as a page with a way back.
    page = officer_client.get(url, HTTP_ACCEPT="text/html")
    assert page.status_code == 409 and page["Content-Type"].startswith("text/html")
    assert b"Admin home" in page.content
    # Staff without the export permission are still refused before the selector runs.
    viewer = django_user_model.objects.create_user(username="vic", password="pw-vic-12345", is_staff=True)
    other = Client()
    other.force_login(viewer)
    assert other.get(url).status_code == 403


def test_large_export_runs_in_the_background_with_progress(
    officer_client, sealed, settings, celery_eager, django_capture_on_commit_callbacks, tmp_path
):
    settings.AUDIT_EXPORT_DIRECT_MAX_ROWS = 3
    with django_capture_on_commit_callbacks(execute=True):
        response = officer_client.post("/admin/audit/auditevent/export/", {"format": "csv"})
    export = AuditExport.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(
        f"/admin/audit/auditexport/{export.pk}/change/"
    )
    assert export.status == AuditExport.Status.DONE and export.progress == 1.0
    assert export.estimated_rows == export.row_count == len(sealed)
    page = officer_client.get(f"/admin/audit/auditexport/{export.pk}/change/")
    assert b"export file" in page.content and b"manifest" in page.content
    download = officer_client.get(f"/admin/audit/auditexport/{export.pk}/download/")
    assert download.status_code == 200
    (tmp_path / "e.csv").write_bytes(b"".join(download.streaming_content))
    (tmp_path / "m.json").write_text(json.dumps(export.manifest))
    assert verify_export(tmp_path / "e.csv", tmp_path / "m.json", public_key_pem=trusted_pem()).ok
    assert AuditEvent.objects.filter(action="audit.export.download", actor="staff:olga").exists()


def test_export_form_requires_the_export_permission(admin_client, client, django_user_model, sealed):
    viewer = django_user_model.objects.create_user(username="vic", password="pw-vic-12345", is_staff=True)
    client.force_login(viewer)
    assert client.get("/admin/audit/auditevent/export/").status_code == 403
    bad = admin_client.post(
        "/admin/audit/auditevent/export/", {"format": "csv", "since": "2026-01-02", "until": "2026-01-01"}
    )
    assert bad.status_code == 200 and b"earlier than" in bad.content


def test_retention_admin_enforces_the_floor_and_audits(admin_client):
    too_short = admin_client.post("/admin/audit/tenantretention/add/", {"tenant_slug": "acme", "retention_days": 90})
    assert too_short.status_code == 200 and not TenantRetention.objects.exists()
    ok = admin_client.post("/admin/audit/tenantretention/add/", {"tenant_slug": "acme", "retention_days": 400})
    assert ok.status_code == 302
    assert TenantRetention.objects.get(tenant_slug="acme").retention_days == 400
    event = AuditEvent.objects.get(action="retention.set")
    assert event.actor == "staff:admin" and event.detail["after"] == {"retention_days": 400}


def test_legal_hold_admin_places_and_releases_through_services(admin_client):
    admin_client.post("/admin/audit/legalhold/add/", {"tenant_slug": "acme", "reason": "subpoena 42"})
    hold = LegalHold.objects.get()
    assert hold.active and hold.placed_by == "staff:admin"
    admin_client.post("/admin/audit/legalhold/", {"action": "release_holds", "_selected_action": [hold.pk]})
    hold.refresh_from_db()
    assert not hold.active and hold.released_by == "staff:admin"
    assert list(AuditEvent.objects.filter(event_type="audit.legal_hold").values_list("action", flat=True)) == [
        "legal_hold.place",
        "legal_hold.release",
    ]


def test_officer_dashboard_shows_seal_status_and_verify_now_records_the_outcome(
    officer_client, sealed, celery_eager, django_capture_on_commit_callbacks
):
    page = officer_client.get("/admin/audit/auditevent/compliance/").content.decode()
    assert "Sealed blocks" in page and "No verification recorded yet." in page
    assert ">3 (" in page and "<td>12</td>" in page  # three blocks, twelve sealed events
    with django_capture_on_commit_callbacks(execute=True):
        response = officer_client.post("/admin/audit/auditevent/compliance/verify/")
    assert response.status_code == 302
    requested = AuditEvent.objects.get(action="audit.verify.requested")
    outcome = AuditEvent.objects.get(action="audit.verify")
    assert requested.actor == outcome.actor == "staff:olga"
    assert outcome.detail["ok"] is True and outcome.detail["blocks_verified"] == 3
    assert outcome.detail["request_seq"] == requested.seq
    page = officer_client.get("/admin/audit/auditevent/compliance/").content.decode()
    assert "Verified: no problems" in page and "staff:olga" in page
    assert officer_client.get("/admin/audit/auditevent/compliance/verify/").status_code == 403  # POST only


def test_audit_event_page_names_its_block_and_serves_a_verifiable_inclusion_proof(officer_client, sealed):
    from audit.merkle import verify_inclusion

    event = sealed[6]
    page = officer_client.get(f"/admin/audit/auditevent/{event.seq}/change/").content.decode()
    assert "block 2" in page and f"/admin/audit/auditevent/{event.seq}/proof/" in page
    proof = officer_client.get(f"/admin/audit/auditevent/{event.seq}/proof/").json()
    assert proof["event_id"] == str(event.event_id) and proof["block"] == 2
    assert verify_inclusion(
        leaf=bytes.fromhex(proof["leaf_hash"]),
        index=proof["leaf_index"],
        size=proof["tree_size"],
        proof=[bytes.fromhex(h) for h in proof["proof"]],
        root=bytes.fromhex(proof["merkle_root"]),
    )


def test_export_form_carries_the_audit_list_filters(officer_client, sealed):
    form = officer_client.get("/admin/audit/auditevent/export/?event_type__exact=request&decision__exact=deny")
    html = form.content.decode()
    assert '<option value="request" selected>' in html and '<option value="deny" selected>' in html


@pytest.mark.parametrize(
    ("query", "since", "until"),
    [
        ("occurred_at__year=2026", "2026-01-01T00:00", "2027-01-01T00:00"),
        ("occurred_at__year=2026&occurred_at__month=12", "2026-12-01T00:00", "2027-01-01T00:00"),
        ("occurred_at__year=2026&occurred_at__month=2&occurred_at__day=28", "2026-02-28T00:00", "2026-03-01T00:00"),
    ],
)
def test_export_form_carries_the_list_date_range(officer_client, sealed, query, since, until):
    html = officer_client.get(f"/admin/audit/auditevent/export/?{query}").content.decode()
    assert f'name="since" value="{since}"' in html and f'name="until" value="{until}"' in html


@pytest.mark.parametrize("query", ["occurred_at__year=x", "occurred_at__year=2026&occurred_at__month=13"])
def test_an_impossible_list_date_leaves_the_range_empty(officer_client, sealed, query):
    response = officer_client.get(f"/admin/audit/auditevent/export/?{query}")
    assert response.status_code == 200
    assert 'name="since" value=' not in response.content.decode()


def test_large_numbers_carry_thousands_separators_and_action_ids_do_not(admin_client, db):
    from tests.audit.factories import AuditEventFactory

    event = AuditEventFactory(units=1234567)
    page = admin_client.get(f"/admin/audit/auditevent/{event.pk}/change/").content.decode()
    assert "1,234,567" in page
    # A number that is data (a primary key in a hidden input, an element id) is never grouped:
    # "1,234" would not parse back. Every template of ours that puts a pk in an attribute unlocalizes it.
    import re
    from pathlib import Path

    from tests.support import ROOT

    attribute_pk = re.compile(r'(?:value|id|name|data-[\w-]+)="[^"]*\{\{\s*[\w.]*\bpk\b(?!\|unlocalize)[^}]*\}\}')
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in Path(ROOT).glob("*/templates/**/*.html")
        for match in attribute_pk.finditer(path.read_text())
    ]
    assert offenders == []
