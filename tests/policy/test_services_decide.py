"""Execution through the services: the listing agrees with predict, and policy state fails closed."""

from __future__ import annotations

import pytest
from django.db import InterfaceError, OperationalError, connection

from core.invalidation import clock
from policy import selectors
from policy.errors import PolicyUnavailable
from policy.services import kill_switch_engage, policy_create, policy_decide, policy_models_visible, policy_update
from tests.policy.factories import ModelFactsFactory, PrincipalFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

MODELS = {
    "digits": ModelFactsFactory(name="digits", risk_tier="limited", region="eu"),
    "faces": ModelFactsFactory(name="faces", risk_tier="high", region="eu"),
    "cn-ocr": ModelFactsFactory(name="cn-ocr", risk_tier="limited", region="cn"),
    "banned": ModelFactsFactory(name="banned", risk_tier="prohibited", region="eu"),
    "us-tiny": ModelFactsFactory(name="us-tiny", risk_tier="minimal", region="us"),
    "legacy": ModelFactsFactory(name="legacy", risk_tier="minimal", region="eu"),
}

PRINCIPALS = {
    "demo": PrincipalFactory(tenant_slug="demo", region="eu"),
    "verified": PrincipalFactory(tenant_slug="verified", region="eu", identity_verified=True),
    "china": PrincipalFactory(tenant_slug="china", region="cn", identity_verified=True),
    "key-limited": PrincipalFactory(
        tenant_slug="verified", identity_verified=True, allowed_models=frozenset({"digits"})
    ),
    "killed": PrincipalFactory(tenant_slug="killed", identity_verified=True),
    "purposeful": PrincipalFactory(tenant_slug="purposeful", approved_purposes=("research",)),
}

EXPECTED_VISIBLE = {
    "demo": {"digits", "us-tiny", "cn-ocr"},
    "verified": {"digits", "faces", "us-tiny"},
    "china": {"cn-ocr"},
    "key-limited": {"digits"},
    "killed": set(),
    "purposeful": {"digits", "us-tiny", "legacy", "cn-ocr"},
}


@pytest.fixture
def governed():
    """Baseline plus tenant and model policies, a monitor rule, and a kill switch."""
    policy_create(
        name="tenant:demo",
        scope="tenant",
        tenant_slug="demo",
        document=[
            {"id": "no-legacy", "type": "model_access", "mode": "enforce", "params": {"deny_models": ["legacy"]}}
        ],
        actor="test",
        reason="setup",
    )
    policy_create(
        name="tenant:verified",
        scope="tenant",
        tenant_slug="verified",
        document=[
            {
                "id": "allow",
                "type": "model_access",
                "mode": "enforce",
                "params": {"models": ["digits", "faces", "us-tiny"]},
            },
            {"id": "watch-eu", "type": "data_residency", "mode": "monitor", "params": {}},
        ],
        actor="test",
        reason="setup",
    )
    policy_create(
        name="tenant:purposeful",
        scope="tenant",
        tenant_slug="purposeful",
        document=[{"id": "purpose", "type": "purpose_limitation", "mode": "enforce", "params": {}}],
        actor="test",
        reason="setup",
    )
    policy_create(
        name="model:legacy",
        scope="model",
        model_name="legacy",
        document=[{"id": "eu-only", "type": "data_residency", "mode": "enforce", "params": {"regions": ["eu"]}}],
        actor="test",
        reason="setup",
    )
    kill_switch_engage(target_type="tenant", target="killed", reason="abuse", actor="test")


@pytest.mark.usefixtures("governed")
@pytest.mark.parametrize("who", sorted(PRINCIPALS))
def test_listing_agrees_with_predict(who):
    principal = PRINCIPALS[who]
    visible = {m.name for m in policy_models_visible(principal=principal, models=list(MODELS.values()))}
    purpose = principal.approved_purposes[0] if principal.approved_purposes else None
    callable_models = {
        name
        for name, model in MODELS.items()
        if policy_decide(principal=principal, model=model, purpose=purpose).allowed
    }
    assert visible == callable_models == EXPECTED_VISIBLE[who]


@pytest.mark.usefixtures("governed")
def test_listing_keeps_the_callers_order():
    models = [MODELS["us-tiny"], MODELS["banned"], MODELS["digits"]]
    assert policy_models_visible(principal=PRINCIPALS["demo"], models=models) == [MODELS["us-tiny"], MODELS["digits"]]


@pytest.mark.usefixtures("governed")
def test_purpose_rules_apply_to_predict_not_to_listing():
    principal = PRINCIPALS["purposeful"]
    assert MODELS["digits"] in policy_models_visible(principal=principal, models=[MODELS["digits"]])
    missing = policy_decide(principal=principal, model=MODELS["digits"], purpose=None)
    assert (missing.allowed, missing.rule_id, missing.reason_code) == (
        False,
        "tenant:purposeful/purpose",
        "purpose_required",
    )
    wrong = policy_decide(principal=principal, model=MODELS["digits"], purpose="marketing")
    assert wrong.reason_code == "purpose_not_approved"


@pytest.mark.usefixtures("governed")
def test_monitor_rule_is_listed_on_an_allowed_decision():
    decision = policy_decide(principal=PRINCIPALS["verified"], model=MODELS["us-tiny"], purpose=None)
    assert decision.allowed
    assert decision.policy_versions == "baseline@1,tenant:verified@1"
    assert [(d["rule_id"], d["reason_code"]) for d in decision.monitor_denials] == [
        ("tenant:verified/watch-eu", "data_residency")
    ]


def test_state_is_compiled_once_per_generation(django_assert_num_queries):
    principal, model = PrincipalFactory(), ModelFactsFactory()
    policy_decide(principal=principal, model=model, purpose=None)
    with django_assert_num_queries(0):
        for _ in range(50):
            policy_decide(principal=principal, model=model, purpose=None)


@pytest.mark.parametrize("error", [OperationalError, InterfaceError])
def test_database_outage_while_loading_fails_closed(monkeypatch, error):
    def outage():
        raise error("could not connect to server")

    monkeypatch.setattr(selectors, "_policy_set_load", outage)
    with pytest.raises(PolicyUnavailable) as excinfo:
        policy_decide(principal=PrincipalFactory(), model=ModelFactsFactory(), purpose=None)
    assert (excinfo.value.status, excinfo.value.code) == (503, "policy_unavailable")
    assert excinfo.value.headers["Retry-After"]
    with pytest.raises(PolicyUnavailable):
        policy_models_visible(principal=PrincipalFactory(), models=[ModelFactsFactory()])


def test_database_outage_at_the_generation_check_fails_closed_even_with_cached_state(monkeypatch):
    principal, model = PrincipalFactory(), ModelFactsFactory()
    assert policy_decide(principal=principal, model=model, purpose=None).allowed

    def outage():
        raise OperationalError("server closed the connection unexpectedly")

    clock.reset()
    monkeypatch.setattr(clock, "values", outage)
    with pytest.raises(PolicyUnavailable):
        policy_decide(principal=principal, model=model, purpose=None)


def test_unreachable_database_fails_closed(monkeypatch):
    def broken_cursor(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    clock.reset()
    with pytest.raises(PolicyUnavailable):
        policy_decide(principal=PrincipalFactory(), model=ModelFactsFactory(), purpose=None)


def test_stored_rule_that_no_longer_compiles_fails_closed():
    policy = policy_create(name="p", document=[], actor="test", reason="setup")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE policy_policyversion SET document = %s WHERE id = %s",
            ['[{"id": "x", "type": "retired_type", "mode": "enforce"}]', policy.current_version_id],
        )
    with pytest.raises(PolicyUnavailable, match="could not be compiled"):
        policy_decide(principal=PrincipalFactory(), model=ModelFactsFactory(), purpose=None)


def test_every_decision_names_the_version_that_made_it(no_baseline):
    """Decisions interleaved with edits: each records exactly the version whose rules produced it."""
    principal, model = PrincipalFactory(), ModelFactsFactory()
    allow = [{"id": "tiers", "type": "model_access", "mode": "enforce", "params": {"max_risk_tier": "high"}}]
    deny = [{"id": "block", "type": "model_access", "mode": "enforce", "params": {"deny_models": ["digits"]}}]
    policy = policy_create(name="p", document=allow, actor="test", reason="v1")
    seen = []
    for step in range(6):
        for _ in range(3):
            decision = policy_decide(principal=principal, model=model, purpose=None)
            seen.append((decision.policy_versions, decision.allowed, decision.rule_id))
        policy_update(policy=policy, document=deny if step % 2 == 0 else allow, actor="test", reason=f"step {step}")
    for versions, allowed, rule_id in seen:
        number = int(versions.split("@")[1])
        assert allowed is (number % 2 == 1)
        assert rule_id == ("" if allowed else "p/block")
    assert {v for v, _, _ in seen} == {f"p@{n}" for n in range(1, 7)}
