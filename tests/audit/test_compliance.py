"""The compliance officer group: view and export the supervision record, change nothing."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command

from audit.models import AuditEvent
from audit.services import compliance_group_ensure
from audit.services.compliance import COMPLIANCE_GROUP_NAME

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

GOVERNED_APPS = ("tenants", "policy", "inference", "audit")


@pytest.fixture
def officer(django_user_model):
    user = django_user_model.objects.create_user(username="olga", password="pw-olga-123", is_staff=True)
    user.groups.add(Group.objects.get(name=COMPLIANCE_GROUP_NAME))
    return django_user_model.objects.get(pk=user.pk)  # fresh permission cache


def test_migration_created_the_group_with_view_and_export():
    group = Group.objects.get(name=COMPLIANCE_GROUP_NAME)
    labels = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}
    assert {"audit.view_auditevent", "audit.export_auditevent", "audit.view_sealedblock", "audit.view_auditexport"} <= (
        labels
    )


def test_officer_can_view_and_export(officer):
    assert officer.has_perm("audit.view_auditevent")
    assert officer.has_perm("audit.export_auditevent")
    assert officer.has_perm("audit.view_purgetombstone")
    assert officer.has_perm("policy.view_policyversion")
    assert not officer.has_perm("policy.change_policyversion")


def test_officer_cannot_change_tenants_keys_plans_policies_or_models(officer):
    writes = Permission.objects.filter(content_type__app_label__in=GOVERNED_APPS).exclude(codename__startswith="view_")
    granted = [
        f"{p.content_type.app_label}.{p.codename}"
        for p in writes
        if officer.has_perm(f"{p.content_type.app_label}.{p.codename}") and p.codename != "export_auditevent"
    ]
    assert granted == []
    for label in (
        "tenants.change_tenant",
        "tenants.add_apikey",
        "tenants.change_plan",
        "policy.change_policy",
        "inference.change_modelversion",
        "audit.add_legalhold",
        "audit.change_tenantretention",
    ):
        assert not officer.has_perm(label)


def test_ensure_picks_up_usage_models_created_later_and_never_grants_writes():
    usage = ContentType.objects.create(app_label="tenants", model="dailyusage")
    view = Permission.objects.create(content_type=usage, codename="view_dailyusage", name="Can view daily usage")
    change = Permission.objects.create(content_type=usage, codename="change_dailyusage", name="Can change")
    result = compliance_group_ensure()
    held = set(result.group.permissions.all())
    assert view in held and change not in held
    assert "tenants.view_dailyusage" in result.permissions


def test_ensure_removes_a_write_permission_added_by_hand_and_audits_it():
    group = Group.objects.get(name=COMPLIANCE_GROUP_NAME)
    sneaky = Permission.objects.filter(codename__startswith="change_").first()
    group.permissions.add(sneaky)
    out = io.StringIO()
    call_command("ensure_compliance_group", stdout=out)
    assert sneaky not in group.permissions.all()
    assert "audit.export_auditevent" in out.getvalue()
    event = AuditEvent.objects.get(action="group.permissions")
    assert f"{sneaky.content_type.app_label}.{sneaky.codename}" in event.detail["before"]
    call_command("ensure_compliance_group", stdout=io.StringIO())
    assert AuditEvent.objects.filter(action="group.permissions").count() == 1  # nothing changed the second time
