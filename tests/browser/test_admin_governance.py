"""Governance screens in a real browser: review decisions, kill-switch targets, the officers' dashboard."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from audit.models import AuditEvent
from audit.services import audit_event_record, audit_seal
from audit.services.compliance import COMPLIANCE_GROUP_NAME
from policy.models import KillSwitch, ReviewItem
from tests.browser.conftest import admin_login, shot
from tests.fixtures.factories import PlanFactory, TenantFactory
from tests.policy.factories import ReviewItemFactory
from tests.support import celery_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_a_review_decision_is_recorded(page, superuser, offsite):
    flagged = audit_event_record(
        event_type="request", http_status=200, raw_input=[[0.0] * 64, [8.0] * 32 + [16.0] * 32]
    )
    item = ReviewItemFactory(
        audit_seq=flagged.seq,
        instance_index=1,
        label="7",
        top_probability=0.41,
        probabilities=[0.0, 0.01, 0.0, 0.3, 0.0, 0.0, 0.0, 0.41, 0.28, 0.0],
    )
    admin_login(page, "root", "pw-root-12345")
    assert page.is_visible("#maas-attention")
    assert page.inner_text("#maas-attention").count("1") >= 1
    page.goto("/admin/policy/reviewitem/")
    shot(page, "admin-review-queue")
    page.click(f"a[href='/admin/policy/reviewitem/{item.pk}/change/']")
    page.wait_for_selector("svg.maas-prob-chart")
    assert page.is_visible("svg.maas-digit")
    shot(page, "admin-review-item")
    page.check("input[name=decision][value=overridden]")
    page.fill("#id_corrected_label", "3")
    page.fill("#id_note", "The loop is open at the top: a 3.")
    page.click("#maas-decide input[type=submit]")
    page.wait_for_selector(".messagelist .success")
    item.refresh_from_db()
    assert (item.status, item.decision, item.corrected_label, item.reviewer) == (
        ReviewItem.Status.REVIEWED,
        "overridden",
        "3",
        "staff:root",
    )
    assert AuditEvent.objects.filter(action="review.overridden", actor="staff:root").count() == 1
    assert not offsite


def test_a_kill_switch_for_an_unknown_target_is_refused(page, superuser):
    TenantFactory(slug="acme", plan=PlanFactory())
    admin_login(page, "root", "pw-root-12345")
    page.goto("/admin/policy/killswitch/add/")
    page.select_option("#id_target_type", "tenant")
    page.fill("#id_target", "acmee")
    page.fill("#id_reason", "abuse reported")
    page.click("input[name=_save]")
    page.wait_for_selector(".errorlist")
    assert "No tenant (slug) 'acmee' exists" in page.inner_text(".errorlist")
    shot(page, "admin-killswitch-refused")
    assert not KillSwitch.objects.exists()
    page.fill("#id_target", "acme")
    page.click("input[name=_save]")
    page.wait_for_selector("#result_list")
    assert "tenant acme (active)" in page.inner_text("#result_list")
    shot(page, "admin-killswitch-list")


def test_an_officer_sees_verification_status_and_runs_verify_now(page, django_user_model, settings, offsite):
    settings.AUDIT_SEAL_LAG_SECONDS = 0
    for number in range(3):
        audit_event_record(event_type="request", http_status=200, tenant_slug="acme", units=number + 1)
    assert audit_seal().events >= 3
    officer = django_user_model.objects.create_user(username="olga", password="pw-olga-12345", is_staff=True)
    officer.groups.add(Group.objects.get(name=COMPLIANCE_GROUP_NAME))
    with celery_worker():
        admin_login(page, "olga", "pw-olga-12345")
        page.goto("/admin/audit/auditevent/compliance/")
        assert "No verification recorded yet" in page.inner_text("#maas-verify-result")
        assert page.is_visible("text=Sealed blocks")
        page.click("#maas-verify-now")
        page.wait_for_selector(".messagelist .info")
        for _ in range(60):  # the worker's answer, bounded: about 30 s
            if "Verified" in page.inner_text("#maas-verify-result"):
                break
            page.wait_for_timeout(500)
            page.reload()
        assert "Verified: no problems" in page.inner_text("#maas-verify-result")
        assert "staff:olga" in page.inner_text("#maas-verification")
        shot(page, "admin-compliance")
    assert AuditEvent.objects.filter(action="audit.verify", actor="staff:olga").count() == 1
    assert not offsite
