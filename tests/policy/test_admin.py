"""Django admin: edits go through the services (validated, versioned, audited); history is read-only."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from audit.models import AuditEvent
from policy.models import KillSwitch, Policy, PolicyVersion, ReviewItem
from policy.services import kill_switch_engage, policy_create
from tests.fixtures.factories import PlanFactory, TenantFactory
from tests.inference.factories import ModelVersionFactory
from tests.policy.factories import ReviewItemFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded, pytest.mark.urls("tests.policy.urls_admin")]

RULES = [{"id": "tiers", "type": "model_access", "mode": "enforce", "params": {"max_risk_tier": "limited"}}]


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


def policy_form(**overrides) -> dict:
    data = {
        "name": "tenant:demo",
        "scope": "tenant",
        "tenant_slug": "demo",
        "model_name": "",
        "enabled": "on",
        "effective_from_0": "",
        "effective_from_1": "",
        "effective_until_0": "",
        "effective_until_1": "",
        "document": json.dumps(RULES),
        "reason": "Onboarding",
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "0",
    }
    data.update(overrides)
    return data


def test_add_policy_creates_version_one_through_the_service(staff):
    response = staff.post(reverse("admin:policy_policy_add"), policy_form())
    assert response.status_code == 302, response.content.decode()[:2000]
    policy = Policy.objects.get(name="tenant:demo")
    assert policy.current_version.number == 1
    assert policy.current_version.author == "staff:alice"
    assert policy.current_version.reason == "Onboarding"
    assert AuditEvent.objects.filter(action="policy.create", actor="staff:alice").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"document": json.dumps([{"id": "x", "type": "nope", "mode": "enforce"}])}, "unknown rule type"),
        ({"document": json.dumps([{"id": "x", "type": "data_residency", "mode": "loud"}])}, "mode must be"),
        ({"document": "{not json"}, "Enter a valid JSON"),
        # Non-text values are a form error, not a 500.
        ({"document": json.dumps([{"id": "x", "type": ["x"], "mode": "enforce"}])}, "unknown rule type"),
        (
            {
                "document": json.dumps(
                    [{"id": "x", "type": "model_access", "mode": "enforce", "params": {"max_risk_tier": {}}}]
                )
            },
            "max_risk_tier must be one of",
        ),
        ({"reason": ""}, "This field is required"),
        ({"tenant_slug": ""}, "tenant policy needs tenant_slug"),
    ],
)
def test_add_policy_refuses_with_a_clear_message(staff, overrides, message):
    response = staff.post(reverse("admin:policy_policy_add"), policy_form(**overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Policy.objects.filter(name="tenant:demo").exists()


def test_change_creates_a_new_version_with_diff(staff):
    policy = policy_create(name="p", document=RULES, actor="staff:alice", reason="first")
    url = reverse("admin:policy_policy_change", args=[policy.pk])
    page = staff.get(url)
    assert page.status_code == 200
    assert "max_risk_tier" in page.content.decode()
    new_rules = [{**RULES[0], "params": {"max_risk_tier": "high"}}]
    response = staff.post(url, policy_form(document=json.dumps(new_rules), reason="Allow high tier"))
    assert response.status_code == 302, response.content.decode()[:2000]
    policy.refresh_from_db()
    version = policy.current_version
    assert (version.number, version.author, version.reason) == (2, "staff:alice", "Allow high tier")
    assert "-    max_risk_tier: limited" in version.diff and "+    max_risk_tier: high" in version.diff


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, "Nothing changed"),
        ({"reason": "", "enabled": ""}, "This field is required"),
        ({"document": json.dumps([{"id": "o", "type": "human_oversight", "mode": "enforce"}])}, "missing parameter"),
    ],
)
def test_change_refused_keeps_the_current_version(staff, overrides, message):
    policy = policy_create(name="p", document=RULES, actor="staff:alice", reason="first")
    response = staff.post(reverse("admin:policy_policy_change", args=[policy.pk]), policy_form(**overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert PolicyVersion.objects.filter(policy=policy).count() == 1


def test_versions_are_listed_and_readable_but_not_editable(staff):
    policy = policy_create(name="p", document=RULES, actor="staff:alice", reason="first")
    version = policy.current_version
    listing = staff.get(reverse("admin:policy_policyversion_changelist"))
    assert listing.status_code == 200 and "p@1" in listing.content.decode()
    detail = staff.get(reverse("admin:policy_policyversion_change", args=[version.pk]))
    body = detail.content.decode()
    assert detail.status_code == 200
    assert "+++ p@1" in body and "first" in body
    assert 'name="_save"' not in body
    assert staff.post(reverse("admin:policy_policyversion_change", args=[version.pk]), {}).status_code == 403
    assert staff.get(reverse("admin:policy_policyversion_delete", args=[version.pk])).status_code == 403
    assert staff.get(reverse("admin:policy_policy_delete", args=[policy.pk])).status_code == 403


def test_decided_by_page_shows_the_versions_recorded_for_a_request(staff):
    policy = policy_create(name="p", document=RULES, actor="staff:alice", reason="first")
    AuditEvent.objects.create(
        occurred_at=policy.created_at,
        event_type="request",
        request_id="req-abc-123",
        tenant_slug="demo",
        model_name="digits",
        model_version=1,
        decision="deny",
        rule_id="p/tiers",
        reason_code="risk_tier_not_allowed",
        policy_versions="baseline@1,p@1,gone@9",
    )
    url = reverse("admin:policy_policyversion_decided_by")
    response = staff.get(url, {"request_id": "req-abc-123"})
    body = response.content.decode()
    assert response.status_code == 200
    assert reverse("admin:policy_policyversion_change", args=[policy.current_version.pk]) in body
    assert "p/tiers" in body and "risk_tier_not_allowed" in body
    assert "gone@9 (not found)" in body
    assert "No recorded event" in staff.get(url, {"request_id": "nope-nope"}).content.decode()
    assert url in staff.get(reverse("admin:policy_policyversion_changelist")).content.decode()


def test_kill_switch_engage_and_lift_from_admin(staff):
    ModelVersionFactory(name="digits")
    response = staff.post(
        reverse("admin:policy_killswitch_add"), {"target_type": "model", "target": "digits", "reason": "Drift found"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    switch = KillSwitch.objects.get()
    assert (switch.created_by, switch.reason, switch.active) == ("staff:alice", "Drift found", True)

    duplicate = staff.post(
        reverse("admin:policy_killswitch_add"), {"target_type": "model", "target": "digits", "reason": "again"}
    )
    assert duplicate.status_code == 200 and "already engaged" in duplicate.content.decode()
    assert (
        staff.post(
            reverse("admin:policy_killswitch_add"), {"target_type": "model", "target": "x", "reason": ""}
        ).status_code
        == 200
    )
    assert KillSwitch.objects.count() == 1

    changelist = reverse("admin:policy_killswitch_changelist")
    ask = staff.post(changelist, {"action": "lift_selected", "_selected_action": [switch.pk]})
    assert ask.status_code == 200 and "Reason for lifting" in ask.content.decode()
    empty = staff.post(
        changelist, {"action": "lift_selected", "_selected_action": [switch.pk], "apply": "1", "text": ""}
    )
    assert empty.status_code == 200
    assert KillSwitch.objects.get().active
    done = staff.post(
        changelist, {"action": "lift_selected", "_selected_action": [switch.pk], "apply": "1", "text": "Retrained"}
    )
    assert done.status_code == 302
    switch.refresh_from_db()
    assert (switch.active, switch.lifted_by, switch.lift_reason) == (False, "staff:alice", "Retrained")
    assert AuditEvent.objects.filter(event_type="policy.kill_switch", action="kill_switch.lift").count() == 1


def test_kill_switch_for_an_unknown_target_is_refused(staff):
    TenantFactory(slug="acme", plan=PlanFactory())
    add = reverse("admin:policy_killswitch_add")
    response = staff.post(add, {"target_type": "tenant", "target": "acmee", "reason": "abuse"})
    assert response.status_code == 200 and "No tenant (slug) &#x27;acmee&#x27; exists" in response.content.decode()
    assert not KillSwitch.objects.exists()
    assert staff.post(add, {"target_type": "tenant", "target": "acme", "reason": "abuse"}).status_code == 302
    listing = staff.get(reverse("admin:policy_killswitch_changelist")).content.decode()
    assert "tenant acme (active) and its 0 unrevoked key(s)" in listing


def test_review_item_is_decided_on_its_own_page_with_a_note(staff):
    item = ReviewItemFactory(label="7", probabilities=[0.0, 0.01, 0.0, 0.3, 0.0, 0.0, 0.0, 0.41, 0.28, 0.0])
    changelist = staff.get(reverse("admin:policy_reviewitem_changelist")).content.decode()
    assert item.request_id[:12] in changelist and "41.0%" in changelist
    page = staff.get(reverse("admin:policy_reviewitem_change", args=[item.pk])).content.decode()
    assert 'class="maas-prob-chart"' in page and "0.410" in page
    assert 'id="maas-digest-only"' in page  # the factory's request retained no raw input
    decide = reverse("admin:policy_reviewitem_decide", args=[item.pk])
    refused = staff.post(decide, {"decision": "overridden", "note": "it is a 3"})
    assert refused.status_code == 400 and "corrected label" in refused.content.decode()
    done = staff.post(decide, {"decision": "overridden", "corrected_label": "3", "note": "it is a 3"})
    assert done.status_code == 302
    item.refresh_from_db()
    assert (item.status, item.decision, item.corrected_label, item.reviewer) == (
        ReviewItem.Status.REVIEWED,
        "overridden",
        "3",
        "staff:alice",
    )
    event = AuditEvent.objects.get(event_type="policy.review", action="review.overridden")
    assert event.actor == "staff:alice" and event.detail["after"]["corrected_label"] == "3"
    rates = staff.get(reverse("admin:policy_reviewitem_override_rates"), {"model": "digits"}).content.decode()
    assert "<td>digits@1</td><td>1</td><td>1</td>" in rates and "100 %" in rates
    assert staff.get(reverse("admin:policy_reviewitem_add")).status_code == 403


def test_review_model_column_names_the_model_not_none(staff):
    ReviewItemFactory(model_name="digits", model_version=4)
    changelist = staff.get(reverse("admin:policy_reviewitem_changelist")).content.decode()
    assert "digits@4" in changelist and "@None" not in changelist


def test_review_item_shows_the_retained_input_as_an_image(staff):
    from audit.services import audit_event_record

    event = audit_event_record(event_type="request", http_status=200, raw_input=[[0.0] * 64, [16.0] * 64])
    item = ReviewItemFactory(audit_seq=event.seq, instance_index=1)
    page = staff.get(reverse("admin:policy_reviewitem_change", args=[item.pk])).content.decode()
    assert 'class="maas-digit"' in page and "rgb(0,0,0)" in page and "Instance #1" in page


def test_review_item_shows_an_input_retained_encrypted_outside_the_record(staff):
    """Retained inputs live encrypted outside the sealed row: the review page decrypts the one instance it shows."""
    import numpy as np

    from audit.services import audit_event_record, audit_input_digest
    from audit.services.recording import audit_input_payload
    from audit.services.retained import retained_input_store

    feeds = {"pixels": np.array([[0.0] * 64, [16.0] * 64], dtype=np.float32)}
    digest = audit_input_digest(payload=audit_input_payload(feeds))
    retained = retained_input_store(
        feeds=feeds, input_digest=digest, days=30, tenant_id=1, tenant_slug="acme", request_id="req-retained"
    )
    event = audit_event_record(
        event_type="request", http_status=200, input_digest=digest, detail={"retained_input": retained.as_detail()}
    )
    assert event.raw_input is None
    item = ReviewItemFactory(audit_seq=event.seq, instance_index=1)
    page = staff.get(reverse("admin:policy_reviewitem_change", args=[item.pk])).content.decode()
    assert 'class="maas-digit"' in page and "rgb(0,0,0)" in page


def test_staff_without_permissions_are_refused(client, django_user_model):
    user = django_user_model.objects.create_user(username="bob", password="pw-bob-12345", is_staff=True)
    client.force_login(user)
    policy = policy_create(name="p", document=RULES, actor="staff:alice", reason="first")
    kill_switch_engage(target_type="tenant", target="demo", reason="r", actor="staff:alice")
    for name in ("policy_changelist", "policyversion_changelist", "killswitch_changelist", "reviewitem_changelist"):
        assert client.get(reverse(f"admin:policy_{name}")).status_code == 403
    assert client.get(reverse("admin:policy_policy_add")).status_code == 403
    assert client.get(reverse("admin:policy_policyversion_decided_by")).status_code == 403
    assert client.post(reverse("admin:policy_policy_change", args=[policy.pk]), policy_form()).status_code == 403


def test_view_only_staff_can_read_but_not_change(client, django_user_model):
    user = django_user_model.objects.create_user(username="vera", password="pw-vera-12345", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="policy", codename__startswith="view_"))
    client.force_login(user)
    policy = policy_create(name="p", document=RULES, actor="staff:alice", reason="first")
    switch = kill_switch_engage(target_type="tenant", target="demo", reason="r", actor="staff:alice")
    assert client.get(reverse("admin:policy_policy_change", args=[policy.pk])).status_code == 200
    response = client.post(
        reverse("admin:policy_policy_change", args=[policy.pk]), policy_form(document="[]", reason="sneaky")
    )
    assert response.status_code == 403
    lift = client.post(
        reverse("admin:policy_killswitch_changelist"),
        {"action": "lift_selected", "_selected_action": [switch.pk], "apply": "1", "text": "sneaky"},
    )
    assert lift.status_code in (200, 302)
    assert KillSwitch.objects.get(pk=switch.pk).active
    assert PolicyVersion.objects.filter(policy=policy).count() == 1
    # Without the audit trail's view permission the request lookup is refused.
    assert client.get(reverse("admin:policy_policyversion_decided_by")).status_code == 403
