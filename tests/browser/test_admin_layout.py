"""Layout at 1366 px: every list page fits without a horizontal scrollbar; times carry their time zone."""

from __future__ import annotations

import pytest

from audit.services import audit_event_record
from inference.models import ModelRollout
from tenants.services import api_key_create
from tests.browser.conftest import admin_login, shot
from tests.fixtures.factories import PlanFactory, TenantFactory
from tests.inference.factories import ModelVersionFactory
from tests.policy.factories import ReviewItemFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

LISTS = [
    "tenants/tenant",
    "tenants/apikey",
    "tenants/plan",
    "inference/modelversion",
    "inference/trainingrun",
    "inference/modelrollout",
    "policy/policy",
    "policy/killswitch",
    "policy/reviewitem",
    "audit/auditevent",
    "audit/sealedblock",
    "audit/auditexport",
]


def test_list_pages_fit_1366_pixels(page, superuser):
    long_actor = "staff:" + "an-operator-with-a-very-long-name-" * 4
    tenant = TenantFactory(slug="a-rather-long-tenant-slug-for-layout", plan=PlanFactory(daily_instances=1_500_000))
    api_key_create(tenant=tenant, actor="test", name="a key with a fairly long descriptive name")
    ModelVersionFactory(name="digits", metrics={"accuracy": 0.9731})
    ModelRollout.objects.create(
        name="digits",
        stable_version=1,
        canary_version=2,
        canary_percent=12.5,
        shadow_versions=[3],
        created_by=long_actor,
    )
    ReviewItemFactory(request_id="9f2c6a0e4b8d4f0a9c1e7b3d5a2f8e6c")
    audit_event_record(
        event_type="request",
        action="predict",
        actor="key:maas_abcdefghijkl",
        tenant_id=tenant.pk,
        tenant_slug=tenant.slug,
        http_status=200,
        model_name="digits",
        model_version=1,
        units=12_345,
    )
    audit_event_record(event_type="config.change", action="plan.update", actor=long_actor)
    admin_login(page, "root", "pw-root-12345")
    too_wide = {}
    for name in LISTS:
        page.goto(f"/admin/{name}/")
        # The result table scrolls inside its own box, so the page never widens: measure the box.
        width, visible = page.evaluate(
            "(() => { const r = document.querySelector('.results') || document.documentElement;"
            " return [r.scrollWidth, r.clientWidth]; })()"
        )
        page_width = page.evaluate("document.documentElement.scrollWidth")
        if width > visible or page_width > 1366:
            too_wide[name] = (width, visible, page_width)
        shot(page, "list-" + name.replace("/", "-"))
    assert too_wide == {}, too_wide
    page.goto("/admin/tenants/plan/")
    assert "1,500,000" in page.inner_text("#result_list")
    page.goto("/admin/audit/auditevent/")
    assert "UTC" in page.inner_text("#result_list")
    # A cell too long for its column is cut with an ellipsis and keeps its full text on hover.
    cut = page.evaluate(
        "(() => Array.from(document.querySelectorAll('#result_list td.field-actor'))"
        ".filter(c => c.scrollWidth > c.clientWidth).map(c => [c.title, c.textContent.trim()]))()"
    )
    assert [long_actor, long_actor] in cut
    assert all(title == text for title, text in cut)
    page.goto(f"/admin/tenants/tenant/{tenant.pk}/usage/?days=7")
    assert "digits" in page.inner_text("#maas-usage-models")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    shot(page, "admin-usage")
