"""Key lifecycle in a real browser: the secret is shown once, and reload/back never issue another key."""

from __future__ import annotations

import pytest

from tenants.models import ApiKey
from tests.browser.conftest import admin_login, shot
from tests.fixtures.factories import PlanFactory, TenantFactory
from tests.inference.factories import ModelVersionFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_create_key_then_reload_and_go_back_leaves_exactly_one_key(page, superuser, offsite):
    ModelVersionFactory(name="digits")
    tenant = TenantFactory(slug="acme", plan=PlanFactory())
    admin_login(page, "root", "pw-root-12345")
    page.goto(f"/admin/tenants/tenant/{tenant.pk}/change/")
    page.click("a.maas-add-key")
    page.wait_for_selector("#id_tenant")
    assert page.eval_on_selector("#id_tenant", "el => el.value") == str(tenant.pk)
    page.fill("#id_name", "ci")
    page.check("input[name=allowed_models][value=digits]")
    shot(page, "admin-key-add")
    page.click("input[name=_save]")
    page.wait_for_selector("code.maas-new-key")
    secret = page.inner_text("code.maas-new-key")
    warning_colour = page.eval_on_selector("#maas-copy-now", "el => getComputedStyle(el).backgroundColor")
    assert warning_colour not in {"rgba(0, 0, 0, 0)", "transparent"}
    shot(page, "admin-key-issued")
    assert ApiKey.objects.filter(tenant=tenant).count() == 1

    page.reload()
    assert page.is_visible("#maas-already-shown")
    assert secret not in page.content()
    page.go_back()
    page.wait_for_load_state()
    page.go_forward()
    page.wait_for_load_state()
    assert secret not in page.content()
    assert ApiKey.objects.filter(tenant=tenant).count() == 1
    assert not offsite


def test_revoke_from_the_key_page_asks_for_a_reason(page, superuser):
    from tenants.services import api_key_create

    tenant = TenantFactory(slug="acme", plan=PlanFactory())
    issued = api_key_create(tenant=tenant, actor="test")
    admin_login(page, "root", "pw-root-12345")
    page.goto(f"/admin/tenants/apikey/{issued.key.pk}/change/")
    page.click("a.maas-revoke")
    shot(page, "admin-key-revoke-confirm")
    page.click("input[type=submit]")  # no reason: the browser's required check refuses to send it
    assert not ApiKey.objects.get(pk=issued.key.pk).revoked
    page.fill("#id_reason", "leaked")
    page.click("input[type=submit]")
    page.wait_for_load_state()
    assert ApiKey.objects.get(pk=issued.key.pk).revoked
