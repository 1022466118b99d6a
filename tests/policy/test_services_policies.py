"""Formulation services: validated, versioned, immutable, diffed, audited, and in force at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditEvent
from core.errors import ValidationFailed
from core.models import Generation
from policy.errors import PolicyInvalid, PolicyUnchanged
from policy.models import Policy, PolicyVersion
from policy.services import policy_create, policy_decide, policy_update
from tests.policy.factories import ModelFactsFactory, PrincipalFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

DENY_DIGITS = [{"id": "no-digits", "type": "model_access", "mode": "enforce", "params": {"deny_models": ["digits"]}}]
ALLOW_ALL = [{"id": "tiers", "type": "model_access", "mode": "enforce", "params": {"max_risk_tier": "high"}}]


def generation() -> int:
    row = Generation.objects.filter(kind="policy").first()
    return row.value if row else 0


def test_create_stores_version_one_with_author_reason_and_diff(no_baseline):
    before = generation()
    policy = policy_create(
        name="tenant:demo",
        scope="tenant",
        tenant_slug="demo",
        document=ALLOW_ALL,
        actor="staff:alice",
        reason="Onboarding demo",
    )
    version = policy.current_version
    assert (version.number, version.author, version.reason) == (1, "staff:alice", "Onboarding demo")
    assert version.document == ALLOW_ALL
    assert version.diff.startswith("--- /dev/null\n+++ tenant:demo@1\n")
    assert "+- id: tiers" in version.diff
    assert generation() == before + 1
    event = AuditEvent.objects.get(event_type="policy.change", action="policy.create")
    assert (event.actor, event.tenant_slug) == ("staff:alice", "demo")
    assert event.detail["target"] == "policy:tenant:demo"
    assert event.detail["before"] is None
    assert event.detail["after"]["rules"] == ALLOW_ALL
    assert event.detail["reason"] == "Onboarding demo"
    assert event.detail["label"] == "tenant:demo@1"


def test_update_creates_a_new_version_and_keeps_the_old_one(no_baseline):
    policy = policy_create(name="p", document=ALLOW_ALL, actor="staff:alice", reason="first")
    version = policy_update(policy=policy, document=DENY_DIGITS, actor="staff:bob", reason="Withdraw digits")
    assert version.number == 2
    assert [v.number for v in PolicyVersion.objects.filter(policy=policy).order_by("number")] == [1, 2]
    old = PolicyVersion.objects.get(policy=policy, number=1)
    assert old.document == ALLOW_ALL and old.author == "staff:alice"
    policy.refresh_from_db()
    assert policy.current_version == version
    assert version.diff.startswith("--- p@1\n+++ p@2\n")
    assert "-- id: tiers" in version.diff and "+- id: no-digits" in version.diff
    event = AuditEvent.objects.get(action="policy.update")
    assert event.detail["before"]["rules"] == ALLOW_ALL
    assert event.detail["after"]["rules"] == DENY_DIGITS
    assert event.detail["version"] == 2
    assert event.detail["diff"] == version.diff


def test_change_is_in_force_in_this_process_at_once(no_baseline):
    principal, model = PrincipalFactory(), ModelFactsFactory()
    policy = policy_create(name="p", document=ALLOW_ALL, actor="staff:alice", reason="first")
    first = policy_decide(principal=principal, model=model, purpose=None)
    assert first.allowed and first.policy_versions == "p@1"
    policy_update(policy=policy, document=DENY_DIGITS, actor="staff:alice", reason="block")
    second = policy_decide(principal=principal, model=model, purpose=None)
    assert (second.allowed, second.rule_id, second.policy_versions) == (False, "p/no-digits", "p@2")


def test_window_and_enabled_changes_are_versioned_too(no_baseline):
    policy = policy_create(name="p", document=DENY_DIGITS, actor="staff:alice", reason="first")
    start = timezone.now() + timedelta(days=1)
    version = policy_update(
        policy=policy, document=DENY_DIGITS, effective_from=start, actor="staff:alice", reason="start tomorrow"
    )
    assert version.effective_from == start
    assert "-effective_from: null" in version.diff and "+effective_from:" in version.diff
    decision = policy_decide(principal=PrincipalFactory(), model=ModelFactsFactory(), purpose=None)
    assert decision.allowed and decision.policy_versions == ""
    disabled = policy_update(policy=policy, document=DENY_DIGITS, enabled=False, actor="staff:alice", reason="off")
    assert disabled.enabled is False and "-enabled: true" in disabled.diff


def test_unchanged_edit_creates_no_version(no_baseline):
    policy = policy_create(name="p", document=DENY_DIGITS, actor="staff:alice", reason="first")
    with pytest.raises(PolicyUnchanged):
        policy_update(policy=policy, document=DENY_DIGITS, actor="staff:alice", reason="again")
    assert PolicyVersion.objects.filter(policy=policy).count() == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"document": [{"id": "x", "type": "nope", "mode": "enforce"}]}, PolicyInvalid, "unknown rule type"),
        ({"document": [{"id": "x", "type": "data_residency", "mode": "maybe"}]}, PolicyInvalid, "mode must be"),
        ({"reason": "  "}, ValidationFailed, "reason is required"),
        ({"name": "Bad Name"}, PolicyInvalid, "Policy names"),
        ({"scope": "tenant"}, PolicyInvalid, "tenant policy needs tenant_slug"),
        ({"scope": "region"}, PolicyInvalid, "Scope must be one of"),
        ({"tenant_slug": "demo"}, PolicyInvalid, "global policy has no tenant_slug"),
        ({"name": "baseline"}, PolicyInvalid, "already exists"),
        (
            {"effective_from": timezone.now(), "effective_until": timezone.now() - timedelta(days=1)},
            PolicyInvalid,
            "effective_until must be later",
        ),
    ],
)
def test_create_refuses_what_cannot_be_evaluated(kwargs, error, message):
    arguments = {"name": "new", "document": ALLOW_ALL, "actor": "staff:alice", "reason": "r", **kwargs}
    with pytest.raises(error) as excinfo:
        policy_create(**arguments)
    assert message in excinfo.value.detail
    assert not Policy.objects.filter(name="new").exists()


def test_update_refuses_bad_rules_and_keeps_the_current_version(no_baseline):
    policy = policy_create(name="p", document=ALLOW_ALL, actor="staff:alice", reason="first")
    bad = [{"id": "o", "type": "human_oversight", "mode": "enforce", "params": {"threshold": 2}}]
    with pytest.raises(PolicyInvalid, match="threshold must be in"):
        policy_update(policy=policy, document=bad, actor="staff:alice", reason="typo")
    policy.refresh_from_db()
    assert policy.current_version.number == 1
    assert not AuditEvent.objects.filter(action="policy.update").exists()


def test_versions_are_immutable(no_baseline):
    policy = policy_create(name="p", document=ALLOW_ALL, actor="staff:alice", reason="first")
    version = policy.current_version
    version.reason = "rewritten history"
    with pytest.raises(TypeError, match="immutable"):
        version.save()
    with pytest.raises(TypeError, match="immutable"):
        version.delete()
    with pytest.raises(TypeError, match="immutable"):
        PolicyVersion.objects.filter(pk=version.pk).update(reason="x")
    with pytest.raises(TypeError, match="immutable"):
        PolicyVersion.objects.filter(pk=version.pk).delete()
    assert PolicyVersion.objects.get(pk=version.pk).reason == "first"


def test_database_refuses_versions_without_reason_and_duplicate_numbers(no_baseline):
    policy = policy_create(name="p", document=ALLOW_ALL, actor="staff:alice", reason="first")
    with pytest.raises(IntegrityError), transaction.atomic():
        PolicyVersion.objects.create(policy=policy, number=2, document=[], author="x", reason="")
    with pytest.raises(IntegrityError), transaction.atomic():
        PolicyVersion.objects.create(policy=policy, number=1, document=[], author="x", reason="dup")


def test_failed_audit_rolls_back_the_change(no_baseline, monkeypatch):
    from audit.errors import AuditUnavailable
    from policy import services

    def broken(**kwargs):
        raise AuditUnavailable("down")

    monkeypatch.setattr(services, "audit_change_record", broken)
    before = generation()
    with pytest.raises(AuditUnavailable):
        policy_create(name="p", document=ALLOW_ALL, actor="staff:alice", reason="first")
    assert not Policy.objects.filter(name="p").exists()
    assert generation() == before


def test_baseline_policy_is_installed_by_migration():
    baseline = Policy.objects.select_related("current_version").get(name="baseline")
    assert baseline.scope == "global" and baseline.enabled
    assert baseline.current_version.number == 1
    assert baseline.current_version.reason
    by_type = {r["type"]: r for r in baseline.current_version.document}
    assert by_type["model_access"]["params"] == {"max_risk_tier": "high"}
    assert by_type["identity_verification"]["params"] == {"min_risk_tier": "high"}
    assert by_type["human_oversight"]["params"] == {"threshold": 0.6}
    assert by_type["data_minimisation"]["params"] == {"retain_raw_input": False}
    assert all(r["mode"] == "enforce" for r in baseline.current_version.document)


@pytest.mark.parametrize(
    ("who", "what", "allowed", "code"),
    [
        ({}, {}, True, "allowed"),
        ({}, {"risk_tier": "high"}, False, "identity_verification_required"),
        ({"identity_verified": True}, {"risk_tier": "high"}, True, "allowed"),
        ({"identity_verified": True}, {"risk_tier": "prohibited"}, False, "prohibited_risk_tier"),
        ({"region": "cn"}, {"region": "eu"}, False, "data_residency"),
        ({"region": "cn"}, {"region": "cn"}, True, "allowed"),
        ({"region": "us"}, {"region": "eu"}, True, "allowed"),
    ],
)
def test_fresh_install_decides_sensibly(who, what, allowed, code):
    decision = policy_decide(principal=PrincipalFactory(**who), model=ModelFactsFactory(**what), purpose=None)
    assert (decision.allowed, decision.reason_code) == (allowed, code)
    assert decision.policy_versions == "baseline@1"
    assert decision.review_threshold == 0.6
    assert decision.retain_raw_input is False
