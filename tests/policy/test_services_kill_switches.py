"""Kill switches: immediate, recorded blocks of a tenant, a key or a model, lifted only by a recorded action."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from audit.models import AuditEvent
from core.errors import ValidationFailed
from core.models import Generation
from policy.errors import KillSwitchConflict
from policy.models import KillSwitch
from policy.services import kill_switch_engage, kill_switch_lift, policy_decide, policy_models_visible
from tests.policy.factories import ModelFactsFactory, PrincipalFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.mark.parametrize(
    ("target_type", "target", "rule_id"),
    [
        ("tenant", "demo", "kill_switch/tenant"),
        ("key", "key-abc", "kill_switch/key"),
        ("model", "digits", "kill_switch/model"),
    ],
)
def test_engage_blocks_at_once_and_lift_restores(target_type, target, rule_id):
    principal = PrincipalFactory(tenant_slug="demo", key_prefix="key-abc")
    bystander = PrincipalFactory(tenant_slug="other", key_prefix="key-other")
    model = ModelFactsFactory()
    assert policy_decide(principal=principal, model=model, purpose=None).allowed

    switch = kill_switch_engage(target_type=target_type, target=target, reason="Abuse report #42", actor="staff:alice")
    denied = policy_decide(principal=principal, model=model, purpose=None)
    assert (denied.allowed, denied.rule_id, denied.reason_code) == (False, rule_id, "kill_switch")
    assert "Abuse report" not in denied.reason
    other_model = ModelFactsFactory(name="faces")
    assert policy_decide(principal=bystander, model=other_model, purpose=None).allowed
    if target_type == "model":
        assert policy_models_visible(principal=bystander, models=[model, other_model]) == [other_model]

    lifted = kill_switch_lift(kill_switch=switch, actor="staff:bob", reason="Investigated: false positive")
    assert (lifted.lifted_by, lifted.lift_reason) == ("staff:bob", "Investigated: false positive")
    assert policy_decide(principal=principal, model=model, purpose=None).allowed

    events = list(AuditEvent.objects.filter(event_type="policy.kill_switch").order_by("seq"))
    assert [e.action for e in events] == ["kill_switch.engage", "kill_switch.lift"]
    assert [e.actor for e in events] == ["staff:alice", "staff:bob"]
    assert events[0].detail["reason"] == "Abuse report #42"
    assert events[1].detail["reason"] == "Investigated: false positive"
    assert events[0].detail["target"] == f"{target_type}:{target}"
    assert events[0].tenant_slug == (target if target_type == "tenant" else "")


def test_engage_and_lift_bump_the_policy_generation():
    def value():
        row = Generation.objects.filter(kind="policy").first()
        return row.value if row else 0

    start = value()
    switch = kill_switch_engage(target_type="model", target="digits", reason="r", actor="staff:alice")
    assert value() == start + 1
    kill_switch_lift(kill_switch=switch, actor="staff:alice", reason="r")
    assert value() == start + 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reason": ""}, "needs a reason"),
        ({"reason": "   "}, "needs a reason"),
        ({"target": ""}, "needs a target"),
        ({"target_type": "region"}, "target_type must be one of"),
    ],
)
def test_engage_refuses_missing_reason_or_target(kwargs, message):
    arguments = {"target_type": "tenant", "target": "demo", "reason": "r", "actor": "staff:alice", **kwargs}
    with pytest.raises(ValidationFailed, match=message):
        kill_switch_engage(**arguments)
    assert not KillSwitch.objects.exists()
    assert not AuditEvent.objects.filter(event_type="policy.kill_switch").exists()


def test_lift_needs_a_reason_and_happens_once():
    switch = kill_switch_engage(target_type="tenant", target="demo", reason="r", actor="staff:alice")
    with pytest.raises(ValidationFailed, match="needs a reason"):
        kill_switch_lift(kill_switch=switch, actor="staff:bob", reason="")
    assert KillSwitch.objects.get(pk=switch.pk).active
    kill_switch_lift(kill_switch=switch, actor="staff:bob", reason="done")
    with pytest.raises(KillSwitchConflict, match="already lifted"):
        kill_switch_lift(kill_switch=switch, actor="staff:bob", reason="again")


def test_one_active_switch_per_target_but_history_is_kept():
    first = kill_switch_engage(target_type="tenant", target="demo", reason="r1", actor="staff:alice")
    with pytest.raises(KillSwitchConflict, match="already engaged"):
        kill_switch_engage(target_type="tenant", target="demo", reason="r2", actor="staff:alice")
    kill_switch_lift(kill_switch=first, actor="staff:alice", reason="ok")
    kill_switch_engage(target_type="tenant", target="demo", reason="r3", actor="staff:alice")
    assert KillSwitch.objects.filter(target="demo").count() == 2
    assert KillSwitch.objects.filter(target="demo", lifted_at__isnull=True).count() == 1


def test_database_enforces_one_active_switch_per_target():
    KillSwitch.objects.create(target_type="key", target="k", reason="r", created_by="x")
    with pytest.raises(IntegrityError), transaction.atomic():
        KillSwitch.objects.create(target_type="key", target="k", reason="r", created_by="x")
