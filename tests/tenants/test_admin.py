"""Django admin: usage chart, keys shown once, revoke/rotate actions, audited staff changes."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from audit.models import AuditEvent
from audit.services import audit_event_record
from tenants.models import ApiKey, Plan, Tenant
from tenants.services import api_key_authenticate
from tests.fixtures.factories import PlanFactory, TenantFactory
from tests.fixtures.tenants import caches_expire, issue_key
from tests.inference.factories import ModelVersionFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("alice", "alice@example.com", "pw-not-used-elsewhere")
    client.force_login(user)
    return client


@pytest.fixture
def acme(db):
    ModelVersionFactory(name="digits")  # the allow-list offers the registry's model names
    return TenantFactory(slug="acme", plan=PlanFactory(daily_instances=1000, monthly_instances=20000))


def _key_form(tenant, **overrides):
    data = {
        "tenant": tenant.pk,
        "name": "from-admin",
        "scopes": ["predict", "usage:read"],
        "allowed_models": ["digits"],
    }
    data.update(overrides)
    return data


def test_tenant_page_shows_chart_and_quota_consumption(staff_client, acme):
    issue_key(acme)
    audit_event_record(event_type="request", tenant_id=acme.pk, tenant_slug=acme.slug, http_status=200, units=12)
    audit_event_record(event_type="request", tenant_id=acme.pk, http_status=429, error_code="quota_exceeded")
    response = staff_client.get(f"/admin/tenants/tenant/{acme.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="maas-usage-chart"' in html
    assert html.count("<rect") >= 90
    assert 'id="tenant-quota"' in html and "1000" in html and "20000" in html
    assert "2 requests, 12 instances" in html
    assert "quota_exceeded 1" in html
    assert "cdn" not in html.lower()


def test_changelists_search_and_filter(staff_client, acme):
    issue_key(acme)
    assert staff_client.get("/admin/tenants/tenant/?q=acme&status__exact=active").status_code == 200
    assert staff_client.get("/admin/tenants/apikey/?q=acme&revoked__exact=0").status_code == 200
    assert staff_client.get("/admin/tenants/plan/?q=plan").status_code == 200
    assert staff_client.get("/admin/tenants/apikey/add/").status_code == 200


def _secret_in(html: str) -> str:
    start = html.index('class="maas-new-key"')
    return html[html.index(">", start) + 1 : html.index("</code>", start)]


def test_creating_a_key_shows_the_secret_once(staff_client, acme):
    response = staff_client.post("/admin/tenants/apikey/add/", _key_form(acme, allowed_models=["digits"]))
    # POST-redirect-GET: the POST answer holds no secret.
    assert response.status_code == 302, response.content[:2000]
    assert "maas-new-key" not in response.content.decode()
    page = staff_client.get(response["Location"])
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    html = page.content.decode()
    key = ApiKey.objects.get(tenant=acme, name="from-admin")
    raw = _secret_in(html)
    assert raw.startswith(key.prefix + ".")
    assert 'data-copy-target="maas-key-' in html and 'class="warning"' in html
    principal = api_key_authenticate(raw_key=raw)
    assert principal.scopes == frozenset({"predict", "usage:read"})
    assert principal.allowed_models == frozenset({"digits"})
    assert key.created_by == "staff:alice"
    # Never again: a reload of the same page and the change page show no secret.
    again = staff_client.get(response["Location"]).content.decode()
    assert raw.split(".")[1] not in again and "already shown" in again
    change = staff_client.get(f"/admin/tenants/apikey/{key.pk}/change/").content.decode()
    assert raw.split(".")[1] not in change
    assert AuditEvent.objects.get(action="api_key.create").actor == "staff:alice"
    assert ApiKey.objects.filter(tenant=acme).count() == 1


def test_issued_page_belongs_to_the_user_who_issued_the_key(staff_client, acme, client):
    location = staff_client.post("/admin/tenants/apikey/add/", _key_form(acme))["Location"]
    other = get_user_model().objects.create_superuser("mallory", "m@example.com", "pw-not-used-elsewhere")
    from django.test import Client

    intruder = Client()
    intruder.force_login(other)
    assert intruder.get(location, HTTP_ACCEPT="text/html").status_code == 404
    assert "maas-new-key" in staff_client.get(location).content.decode()


def test_revoke_on_the_key_page_needs_confirmation_and_a_reason(staff_client, acme):
    first = issue_key(acme)
    url = f"/admin/tenants/apikey/{first.key.pk}/revoke/"
    assert url.encode() in staff_client.get(f"/admin/tenants/apikey/{first.key.pk}/change/").content
    assert staff_client.get(url).status_code == 200
    assert not ApiKey.objects.get(pk=first.key.pk).revoked  # asking is not doing
    response = staff_client.post(url, {"reason": "  "})
    assert response.status_code == 200 and not ApiKey.objects.get(pk=first.key.pk).revoked
    response = staff_client.post(url, {"reason": "leaked in a public repository"})
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=first.key.pk).revoked
    event = AuditEvent.objects.get(action="api_key.revoke")
    assert event.actor == "staff:alice" and event.detail["after"]["revoked_reason"] == "leaked in a public repository"


def test_rotate_on_the_key_page_with_grace_period_and_reason(staff_client, acme):
    second = issue_key(acme)
    url = f"/admin/tenants/apikey/{second.key.pk}/rotate/"
    assert b'name="grace_hours"' in staff_client.get(url).content
    assert staff_client.post(url, {"grace_hours": "2", "reason": ""}).status_code == 200
    assert not ApiKey.objects.filter(rotated_from=second.key).exists()
    response = staff_client.post(url, {"grace_hours": "2", "reason": "scheduled rotation"})
    assert response.status_code == 302
    successor = ApiKey.objects.get(rotated_from=second.key)
    raw = _secret_in(staff_client.get(response["Location"]).content.decode())
    caches_expire()
    assert api_key_authenticate(raw_key=raw).key_prefix == successor.prefix
    assert api_key_authenticate(raw_key=second.raw_key).key_prefix == second.key.prefix  # grace period
    old = ApiKey.objects.get(pk=second.key.pk)
    assert 1.9 < (old.grace_until - successor.created_at).total_seconds() / 3600 < 2.1
    assert AuditEvent.objects.get(action="api_key.rotate_out").detail["reason"] == "scheduled rotation"


def test_no_bulk_revoke_or_rotate_without_confirmation(staff_client, acme):
    issued = issue_key(acme)
    staff_client.post("/admin/tenants/apikey/", {"action": "revoke_keys", "_selected_action": [issued.key.pk]})
    assert not ApiKey.objects.get(pk=issued.key.pk).revoked


def test_tenant_page_offers_add_api_key_for_that_tenant(staff_client, acme):
    html = staff_client.get(f"/admin/tenants/tenant/{acme.pk}/change/").content.decode()
    assert f"/admin/tenants/apikey/add/?tenant={acme.pk}" in html
    form = staff_client.get(f"/admin/tenants/apikey/add/?tenant={acme.pk}").content.decode()
    assert f'<option value="{acme.pk}" selected>' in form


def test_key_edit_is_audited(staff_client, acme):
    issued = issue_key(acme)
    data = _key_form(acme, name="renamed", scopes=["predict"], allowed_models=[], daily_instances="5")
    data.pop("tenant")
    response = staff_client.post(f"/admin/tenants/apikey/{issued.key.pk}/change/", data)
    assert response.status_code == 302, response.content[:3000]
    key = ApiKey.objects.get(pk=issued.key.pk)
    assert (key.name, key.scopes, key.daily_instances) == ("renamed", ["predict"], 5)
    event = AuditEvent.objects.get(action="api_key.update")
    assert event.actor == "staff:alice" and event.detail["before"]["name"] == issued.key.name


def _tenant_form(tenant: Tenant, **changes) -> dict:
    data = {
        "name": tenant.name,
        "contact": tenant.contact,
        "region": tenant.region,
        "plan": tenant.plan_id,
        "status": tenant.status,
        "suspended_reason": tenant.suspended_reason,
        "identity_verified": "on" if tenant.identity_verified else "",
        "approved_purposes": '["research"]',
        "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0",
        "api_keys-MIN_NUM_FORMS": "0",
        "api_keys-MAX_NUM_FORMS": "1000",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v != ""}


def test_tenant_edit_is_audited_with_before_and_after(staff_client, acme):
    response = staff_client.post(f"/admin/tenants/tenant/{acme.pk}/change/", _tenant_form(acme, daily_instances="77"))
    assert response.status_code == 302, response.content[:3000]
    assert Tenant.objects.get(pk=acme.pk).daily_instances == 77
    event = AuditEvent.objects.get(action="tenant.update")
    assert event.actor == "staff:alice"
    assert event.detail["before"]["daily_instances"] is None and event.detail["after"]["daily_instances"] == 77


def test_suspension_without_reason_is_a_form_error(staff_client, acme):
    response = staff_client.post(f"/admin/tenants/tenant/{acme.pk}/change/", _tenant_form(acme, status="suspended"))
    assert response.status_code == 200
    assert "A suspension needs a reason." in response.content.decode()
    assert Tenant.objects.get(pk=acme.pk).status == "active"


def test_plan_edit_is_audited(staff_client, acme):
    plan = acme.plan
    response = staff_client.post(
        f"/admin/tenants/plan/{plan.pk}/change/",
        {
            "name": plan.name,
            "daily_instances": "5",
            "max_batch": "8",
            "max_body_bytes": "1000",
            "max_concurrent_jobs": "1",
            "max_job_instances": "10",
        },
    )
    assert response.status_code == 302, response.content[:3000]
    assert Plan.objects.get(pk=plan.pk).daily_instances == 5
    assert AuditEvent.objects.get(action="plan.update").actor == "staff:alice"


def test_tenant_created_in_admin_is_audited(staff_client):
    plan = PlanFactory()
    data = _tenant_form(
        Tenant(name="Beta", region="us", plan=plan, identity_verified=True), slug="beta", approved_purposes='["demo"]'
    )
    response = staff_client.post("/admin/tenants/tenant/add/", data)
    assert response.status_code == 302, response.content[:3000]
    tenant = Tenant.objects.get(slug="beta")
    assert tenant.verified_by == "staff:alice" and tenant.approved_purposes == ["demo"]
    event = AuditEvent.objects.get(action="tenant.create")
    assert event.actor == "staff:alice" and event.detail["before"] is None and event.detail["after"]["region"] == "us"


def test_usage_page_per_key_and_model_with_ranges_and_csv(staff_client, acme):
    issued = issue_key(acme)
    for units in (1200, 300):
        audit_event_record(
            event_type="request",
            tenant_id=acme.pk,
            tenant_slug=acme.slug,
            key_prefix=issued.key.prefix,
            model_name="digits",
            model_version=1,
            http_status=200,
            units=units,
        )
    page = staff_client.get(f"/admin/tenants/tenant/{acme.pk}/usage/?days=7").content.decode()
    assert "last 7 days" in page and "1,500" in page
    assert issued.key.prefix in page and "digits@1" in page and "UTC" in page
    csv_text = staff_client.get(f"/admin/tenants/tenant/{acme.pk}/usage/?days=90&format=csv").content.decode()
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("tenant,since,until,kind,label,requests,instances")
    assert any(line.startswith("acme,") and ",key," in line and ",2,1500," in line for line in lines)


def test_compliance_officer_reads_usage_but_cannot_edit_tenants(client, acme):
    from django.contrib.auth.models import Group

    from audit.services.compliance import COMPLIANCE_GROUP_NAME

    officer = get_user_model().objects.create_user("olga", "o@example.com", "pw-not-used-elsewhere", is_staff=True)
    officer.groups.add(Group.objects.get(name=COMPLIANCE_GROUP_NAME))
    client.force_login(officer)
    assert client.get(f"/admin/tenants/tenant/{acme.pk}/usage/").status_code == 200
    denied = client.get(f"/admin/tenants/tenant/{acme.pk}/change/", HTTP_ACCEPT="text/html")
    assert denied.status_code == 403 and denied["Content-Type"].startswith("text/html")
    assert b"Admin home" in denied.content


def test_suspending_a_tenant_asks_for_a_reason_recorded_with_the_actor(staff_client, acme):
    url = f"/admin/tenants/tenant/{acme.pk}/suspend/"
    assert url.encode() in staff_client.get(f"/admin/tenants/tenant/{acme.pk}/change/").content
    assert b"will be refused" in staff_client.get(url).content
    assert staff_client.post(url, {"reason": " "}).status_code == 200
    assert Tenant.objects.get(pk=acme.pk).status == Tenant.Status.ACTIVE
    assert staff_client.post(url, {"reason": "unpaid invoices"}).status_code == 302
    assert Tenant.objects.get(pk=acme.pk).status == Tenant.Status.SUSPENDED
    event = AuditEvent.objects.filter(actor="staff:alice").latest("seq")
    assert "unpaid invoices" in json.dumps(event.detail)
    assert staff_client.post(url, {"reason": "paid"}).status_code == 302
    assert Tenant.objects.get(pk=acme.pk).status == Tenant.Status.ACTIVE
