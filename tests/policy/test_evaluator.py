"""The evaluator, table-driven: every rule type in both modes, windows, precedence, kill switches.

Pure tests of ``policy.evaluator`` (no database): the state is compiled from
``PolicySpec`` values exactly as ``policy.selectors`` compiles stored rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policy.evaluator import Decision, PolicySpec, compile_policy_set, decide
from policy.rules import RuleError
from tests.policy.factories import ModelFactsFactory, PrincipalFactory

pytestmark = pytest.mark.embedded

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def one_rule_set(rule_type: str, params: dict, mode: str, **spec_kwargs):
    rule = {"id": "r1", "type": rule_type, "mode": mode, "params": params}
    return compile_policy_set([PolicySpec(name="p", scope="global", target="", version=1, rules=[rule], **spec_kwargs)])


# (case id, rule type, params, principal overrides, model overrides, purpose, expected reason code or None)
RESTRICTIONS = [
    ("access-allowlist-miss", "model_access", {"models": ["digits"]}, {}, {"name": "faces"}, None, "model_not_allowed"),
    ("access-allowlist-hit", "model_access", {"models": ["digits"]}, {}, {}, None, None),
    ("access-denylist", "model_access", {"deny_models": ["digits"]}, {}, {}, None, "model_not_allowed"),
    ("access-tier-above", "model_access", {"max_risk_tier": "minimal"}, {}, {}, None, "risk_tier_not_allowed"),
    ("access-tier-within", "model_access", {"max_risk_tier": "high"}, {}, {"risk_tier": "high"}, None, None),
    ("residency-same-region", "data_residency", {}, {}, {}, None, None),
    ("residency-other-region", "data_residency", {}, {}, {"region": "us"}, None, "data_residency"),
    (
        "residency-mapping-cn",
        "data_residency",
        {"mapping": {"cn": ["cn"], "*": ["*"]}},
        {"region": "cn"},
        {"region": "eu"},
        None,
        "data_residency",
    ),
    (
        "residency-mapping-fallback",
        "data_residency",
        {"mapping": {"cn": ["cn"], "*": ["*"]}},
        {"region": "us"},
        {"region": "eu"},
        None,
        None,
    ),
    (
        "residency-mapping-eu-to-eu-or-us",
        "data_residency",
        {"mapping": {"eu": ["eu", "us"]}},
        {"region": "eu"},
        {"region": "us"},
        None,
        None,
    ),
    ("residency-explicit-ok", "data_residency", {"regions": ["eu"]}, {"region": "cn"}, {}, None, None),
    (
        "residency-explicit-miss",
        "data_residency",
        {"regions": ["eu"]},
        {},
        {"region": "us"},
        None,
        "data_residency",
    ),
    ("purpose-missing", "purpose_limitation", {}, {}, {}, None, "purpose_required"),
    ("purpose-unapproved", "purpose_limitation", {}, {}, {}, "marketing", "purpose_not_approved"),
    ("purpose-approved", "purpose_limitation", {}, {}, {}, "research", None),
    (
        "purpose-restricted",
        "purpose_limitation",
        {"purposes": ["medical"]},
        {"approved_purposes": ("research", "medical")},
        {},
        "research",
        "purpose_not_approved",
    ),
    ("purpose-below-tier", "purpose_limitation", {"min_risk_tier": "high"}, {}, {}, None, None),
    (
        "identity-unverified-high",
        "identity_verification",
        {"min_risk_tier": "high"},
        {},
        {"risk_tier": "high"},
        None,
        "identity_verification_required",
    ),
    (
        "identity-verified-high",
        "identity_verification",
        {"min_risk_tier": "high"},
        {"identity_verified": True},
        {"risk_tier": "high"},
        None,
        None,
    ),
    ("identity-below-tier", "identity_verification", {"min_risk_tier": "high"}, {}, {}, None, None),
]


@pytest.mark.parametrize(
    ("rule_type", "params", "who", "what", "purpose", "expected"),
    [c[1:] for c in RESTRICTIONS],
    ids=[c[0] for c in RESTRICTIONS],
)
def test_restriction_in_enforce_mode(rule_type, params, who, what, purpose, expected):
    decision = decide(
        one_rule_set(rule_type, params, "enforce"),
        PrincipalFactory(**who),
        ModelFactsFactory(**what),
        purpose,
        "predict",
        NOW,
    )
    assert decision.monitor_denials == ()
    assert decision.policy_versions == "p@1"
    if expected is None:
        assert decision.allowed, decision
        assert (decision.rule_id, decision.reason_code) == ("", "allowed")
    else:
        assert not decision.allowed
        assert decision.rule_id == "p/r1"
        assert decision.reason_code == expected
        assert decision.reason


@pytest.mark.parametrize(
    ("rule_type", "params", "who", "what", "purpose", "expected"),
    [c[1:] for c in RESTRICTIONS],
    ids=[c[0] for c in RESTRICTIONS],
)
def test_restriction_in_monitor_mode_allows_and_lists_the_denial(rule_type, params, who, what, purpose, expected):
    decision = decide(
        one_rule_set(rule_type, params, "monitor"),
        PrincipalFactory(**who),
        ModelFactsFactory(**what),
        purpose,
        "predict",
        NOW,
    )
    assert decision.allowed
    assert decision.rule_id == ""
    if expected is None:
        assert decision.monitor_denials == ()
    else:
        assert [(d["rule_id"], d["reason_code"]) for d in decision.monitor_denials] == [("p/r1", expected)]
        assert decision.monitor_denials[0]["reason"]


# (case id, rule type, params, model overrides, enforce expectations, monitor effect)
OBLIGATIONS = [
    (
        "oversight",
        "human_oversight",
        {"threshold": 0.7},
        {},
        {"review_threshold": 0.7},
        {"effect": "review_threshold", "threshold": 0.7},
    ),
    (
        "oversight-below-tier",
        "human_oversight",
        {"threshold": 0.7, "min_risk_tier": "high"},
        {},
        {"review_threshold": None},
        None,
    ),
    (
        "minimisation-retain",
        "data_minimisation",
        {"retain_raw_input": True, "retention_days": 30},
        {},
        {"retain_raw_input": True, "raw_input_retention_days": 30},
        {"effect": "data_minimisation", "retain_raw_input": True, "retention_days": 30},
    ),
    (
        "minimisation-never",
        "data_minimisation",
        {"retain_raw_input": False},
        {},
        {"retain_raw_input": False, "raw_input_retention_days": 0},
        {"effect": "data_minimisation", "retain_raw_input": False, "retention_days": 0},
    ),
]


@pytest.mark.parametrize(
    ("rule_type", "params", "what", "enforced", "monitored"),
    [c[1:] for c in OBLIGATIONS],
    ids=[c[0] for c in OBLIGATIONS],
)
def test_obligation_in_both_modes(rule_type, params, what, enforced, monitored):
    principal, model = PrincipalFactory(), ModelFactsFactory(**what)
    enforce = decide(one_rule_set(rule_type, params, "enforce"), principal, model, None, "predict", NOW)
    assert enforce.allowed
    for attribute, value in enforced.items():
        assert getattr(enforce, attribute) == value
    assert enforce.monitor_effects == ()

    monitor = decide(one_rule_set(rule_type, params, "monitor"), principal, model, None, "predict", NOW)
    assert monitor.allowed
    assert (monitor.review_threshold, monitor.retain_raw_input, monitor.raw_input_retention_days) == (None, False, 0)
    if monitored is None:
        assert monitor.monitor_effects == ()
    else:
        assert monitor.monitor_effects == ({"rule_id": "p/r1", **monitored},)


def test_defaults_without_any_policy_never_retain_inputs_and_set_no_threshold():
    decision = decide(compile_policy_set([]), PrincipalFactory(), ModelFactsFactory(), None, "predict", NOW)
    assert decision == Decision(
        allowed=True,
        rule_id="",
        reason_code="allowed",
        reason="Allowed by policy.",
        policy_versions="",
    )


# --- effective windows ----------------------------------------------------------------

WINDOW_FROM, WINDOW_UNTIL = NOW - timedelta(days=1), NOW + timedelta(days=1)


@pytest.mark.parametrize(
    ("at", "in_force"),
    [
        (WINDOW_FROM - timedelta(seconds=1), False),
        (WINDOW_FROM, True),
        (NOW, True),
        (WINDOW_UNTIL - timedelta(seconds=1), True),
        (WINDOW_UNTIL, False),
        (WINDOW_UNTIL + timedelta(days=30), False),
    ],
    ids=["before", "at-start", "inside", "just-before-end", "at-end", "after"],
)
@pytest.mark.parametrize("mode", ["enforce", "monitor"])
def test_effective_window_is_evaluated_at_decision_time(at, in_force, mode):
    policy_set = one_rule_set(
        "model_access", {"deny_models": ["digits"]}, mode, effective_from=WINDOW_FROM, effective_until=WINDOW_UNTIL
    )
    decision = decide(policy_set, PrincipalFactory(), ModelFactsFactory(), None, "predict", at)
    assert decision.policy_versions == ("p@1" if in_force else "")
    if mode == "enforce":
        assert decision.allowed is not in_force
    else:
        assert decision.allowed
        assert bool(decision.monitor_denials) is in_force


def test_open_ended_windows():
    starts_later = one_rule_set("model_access", {"deny_models": ["digits"]}, "enforce", effective_from=WINDOW_UNTIL)
    ended = one_rule_set("model_access", {"deny_models": ["digits"]}, "enforce", effective_until=WINDOW_FROM)
    p, m = PrincipalFactory(), ModelFactsFactory()
    assert decide(starts_later, p, m, None, "predict", NOW).allowed
    assert not decide(starts_later, p, m, None, "predict", WINDOW_UNTIL + timedelta(hours=1)).allowed
    assert decide(ended, p, m, None, "predict", NOW).allowed
    assert not decide(ended, p, m, None, "predict", WINDOW_FROM - timedelta(hours=1)).allowed


def test_now_may_be_epoch_seconds():
    policy_set = one_rule_set("model_access", {"deny_models": ["digits"]}, "enforce", effective_from=WINDOW_FROM)
    p, m = PrincipalFactory(), ModelFactsFactory()
    assert decide(policy_set, p, m, None, "predict", NOW.timestamp()).allowed is False
    assert decide(policy_set, p, m, None, "predict", WINDOW_FROM.timestamp() - 1).allowed is True


def test_disabled_policies_are_not_compiled():
    rule = {"id": "r1", "type": "model_access", "mode": "enforce", "params": {"deny_models": ["digits"]}}
    policy_set = compile_policy_set([PolicySpec("p", "global", "", 4, [rule], enabled=False)])
    decision = decide(policy_set, PrincipalFactory(), ModelFactsFactory(), None, "predict", NOW)
    assert decision.allowed and decision.policy_versions == ""


# --- scopes, precedence, version sets -----------------------------------------------------


def deny_rule(rule_id: str, mode: str = "enforce", model: str = "digits") -> dict:
    return {"id": rule_id, "type": "model_access", "mode": mode, "params": {"deny_models": [model]}}


def scoped_set():
    return compile_policy_set(
        [
            PolicySpec("baseline", "global", "", 3, [deny_rule("g-monitor", "monitor")]),
            PolicySpec("tenant:demo", "tenant", "demo", 1, [deny_rule("t-enforce")]),
            PolicySpec("tenant:other", "tenant", "other", 7, [deny_rule("secret-rule")]),
            PolicySpec(
                "model:digits", "model", "digits", 2, [deny_rule("m-enforce"), deny_rule("m-monitor", "monitor")]
            ),
        ]
    )


def test_version_set_names_the_policies_in_force_for_this_request_only():
    decision = decide(scoped_set(), PrincipalFactory(tenant_slug="demo"), ModelFactsFactory(), None, "predict", NOW)
    assert decision.policy_versions == "baseline@3,tenant:demo@1,model:digits@2"
    other_model = decide(scoped_set(), PrincipalFactory(), ModelFactsFactory(name="faces"), None, "predict", NOW)
    assert other_model.policy_versions == "baseline@3,tenant:demo@1"


def test_first_enforce_denial_decides_and_every_monitor_denial_is_listed():
    decision = decide(scoped_set(), PrincipalFactory(tenant_slug="demo"), ModelFactsFactory(), None, "predict", NOW)
    assert not decision.allowed
    assert decision.rule_id == "tenant:demo/t-enforce"
    assert decision.reason_code == "model_not_allowed"
    assert [d["rule_id"] for d in decision.monitor_denials] == ["baseline/g-monitor", "model:digits/m-monitor"]


def test_decision_reveals_nothing_about_other_tenants():
    decision = decide(scoped_set(), PrincipalFactory(tenant_slug="demo"), ModelFactsFactory(), None, "predict", NOW)
    text = repr(decision)
    assert "other" not in text and "secret-rule" not in text
    third = decide(scoped_set(), PrincipalFactory(tenant_slug="third"), ModelFactsFactory(), None, "predict", NOW)
    assert "demo" not in repr(third) and "other" not in repr(third)
    assert third.rule_id == "model:digits/m-enforce"


def test_highest_review_threshold_applies():
    rules = lambda t: [{"id": "o", "type": "human_oversight", "mode": "enforce", "params": {"threshold": t}}]  # noqa: E731
    policy_set = compile_policy_set(
        [PolicySpec("a", "global", "", 1, rules(0.6)), PolicySpec("b", "tenant", "demo", 1, rules(0.8))]
    )
    assert decide(policy_set, PrincipalFactory(), ModelFactsFactory(), None, "predict", NOW).review_threshold == 0.8
    assert (
        decide(
            policy_set, PrincipalFactory(tenant_slug="x"), ModelFactsFactory(), None, "predict", NOW
        ).review_threshold
        == 0.6
    )


def minimisation(retain: bool, days: int = 0, rule_id: str = "dm") -> dict:
    params = {"retain_raw_input": retain, **({"retention_days": days} if retain else {})}
    return {"id": rule_id, "type": "data_minimisation", "mode": "enforce", "params": params}


def test_data_minimisation_most_specific_scope_wins_then_most_restrictive():
    policy_set = compile_policy_set(
        [
            PolicySpec("baseline", "global", "", 1, [minimisation(False)]),
            PolicySpec("tenant:demo", "tenant", "demo", 1, [minimisation(True, 90)]),
            PolicySpec("tenant:demo-extra", "tenant", "demo", 1, [minimisation(True, 30)]),
            PolicySpec("tenant:strict", "tenant", "strict", 1, [minimisation(True, 30)]),
            PolicySpec("tenant:strict-2", "tenant", "strict", 1, [minimisation(False)]),
        ]
    )
    demo = decide(policy_set, PrincipalFactory(tenant_slug="demo"), ModelFactsFactory(), None, "predict", NOW)
    assert (demo.retain_raw_input, demo.raw_input_retention_days) == (True, 30)
    strict = decide(policy_set, PrincipalFactory(tenant_slug="strict"), ModelFactsFactory(), None, "predict", NOW)
    assert (strict.retain_raw_input, strict.raw_input_retention_days) == (False, 0)
    anyone = decide(policy_set, PrincipalFactory(tenant_slug="anyone"), ModelFactsFactory(), None, "predict", NOW)
    assert (anyone.retain_raw_input, anyone.raw_input_retention_days) == (False, 0)


# --- built-ins and kill switches ------------------------------------------------------------


def permissive_set(kill_switches=()):
    rules = [{"id": "all", "type": "model_access", "mode": "enforce", "params": {"max_risk_tier": "prohibited"}}]
    return compile_policy_set([PolicySpec("open", "global", "", 1, rules)], kill_switches)


@pytest.mark.parametrize(
    ("model", "principal", "rule_id", "code"),
    [
        ({"risk_tier": "prohibited"}, {}, "builtin/prohibited-risk-tier", "prohibited_risk_tier"),
        ({"risk_tier": "catastrophic"}, {}, "builtin/unknown-risk-tier", "unknown_risk_tier"),
        (
            {"name": "faces"},
            {"allowed_models": frozenset({"digits"})},
            "builtin/key-allowed-models",
            "model_not_allowed",
        ),
    ],
    ids=["prohibited", "unknown-tier", "key-allow-list"],
)
def test_builtins_deny_whatever_the_policies_say(model, principal, rule_id, code):
    decision = decide(permissive_set(), PrincipalFactory(**principal), ModelFactsFactory(**model), None, "predict", NOW)
    assert (decision.allowed, decision.rule_id, decision.reason_code) == (False, rule_id, code)


def test_key_allow_list_admits_listed_models():
    principal = PrincipalFactory(allowed_models=frozenset({"digits"}))
    assert decide(permissive_set(), principal, ModelFactsFactory(), None, "predict", NOW).allowed


@pytest.mark.parametrize(
    ("switch", "rule_id"),
    [
        (("tenant", "demo"), "kill_switch/tenant"),
        (("key", "key-abc"), "kill_switch/key"),
        (("model", "digits"), "kill_switch/model"),
    ],
)
def test_kill_switch_blocks_its_target_only(switch, rule_id):
    policy_set = permissive_set([switch])
    blocked = decide(
        policy_set,
        PrincipalFactory(tenant_slug="demo", key_prefix="key-abc"),
        ModelFactsFactory(),
        None,
        "predict",
        NOW,
    )
    assert (blocked.allowed, blocked.rule_id, blocked.reason_code) == (False, rule_id, "kill_switch")
    untouched = decide(
        policy_set,
        PrincipalFactory(tenant_slug="x", key_prefix="key-x"),
        ModelFactsFactory(name="faces"),
        None,
        "predict",
        NOW,
    )
    assert untouched.allowed


def test_kill_switch_takes_precedence_and_monitor_rules_still_listed():
    rules = [deny_rule("watch", "monitor")]
    policy_set = compile_policy_set([PolicySpec("p", "global", "", 1, rules)], [("model", "digits")])
    decision = decide(policy_set, PrincipalFactory(), ModelFactsFactory(), None, "predict", NOW)
    assert decision.rule_id == "kill_switch/model"
    assert [d["rule_id"] for d in decision.monitor_denials] == ["p/watch"]


def test_listing_skips_purpose_rules_only():
    rules = [
        {"id": "purpose", "type": "purpose_limitation", "mode": "enforce", "params": {}},
        {"id": "tier", "type": "model_access", "mode": "enforce", "params": {"max_risk_tier": "limited"}},
    ]
    policy_set = compile_policy_set([PolicySpec("p", "global", "", 1, rules)])
    principal = PrincipalFactory()
    assert decide(policy_set, principal, ModelFactsFactory(), None, "list", NOW).allowed
    assert not decide(policy_set, principal, ModelFactsFactory(), None, "predict", NOW).allowed
    assert not decide(policy_set, principal, ModelFactsFactory(risk_tier="high"), None, "list", NOW).allowed


def test_compiling_an_unevaluable_stored_policy_fails():
    with pytest.raises(RuleError, match="policy 'broken'"):
        compile_policy_set([PolicySpec("broken", "global", "", 1, [{"id": "x", "type": "nope", "mode": "enforce"}])])
    with pytest.raises(RuleError, match="kill switch target type"):
        compile_policy_set([], [("region", "eu")])


# --- canary eligibility (rollouts) ------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "who", "purpose", "eligible", "reason_code"),
    [
        ({"tenants": ["demo"]}, {}, None, True, None),
        ({"tenants": ["acme"]}, {}, None, False, "tenant_not_opted_in"),
        ({"tenants": []}, {}, None, False, "tenant_not_opted_in"),
        ({"exclude_tenants": ["demo"]}, {}, None, False, "tenant_excluded"),
        ({"exclude_regions": ["cn"]}, {"region": "cn"}, None, False, "region_excluded"),
        ({"exclude_regions": ["cn"]}, {}, None, True, None),
        ({"exclude_purposes": ["medical"]}, {}, "medical", False, "purpose_excluded"),
        ({"exclude_purposes": ["medical"]}, {}, "research", True, None),
    ],
)
def test_canary_eligibility_decides_who_may_be_served_a_canary(params, who, purpose, eligible, reason_code):
    principal, model = PrincipalFactory(**who), ModelFactsFactory()
    enforce = decide(one_rule_set("canary_eligibility", params, "enforce"), principal, model, purpose, "predict", NOW)
    # Never a denial: an ineligible caller is served the stable version.
    assert enforce.allowed and enforce.canary_allowed is eligible
    monitor = decide(one_rule_set("canary_eligibility", params, "monitor"), principal, model, purpose, "predict", NOW)
    assert monitor.allowed and monitor.canary_allowed
    expected = () if eligible else ({"rule_id": "p/r1", "effect": "canary_ineligible", "reason_code": reason_code},)
    assert monitor.monitor_effects == expected


def test_without_a_canary_rule_every_caller_is_eligible():
    decision = decide(compile_policy_set([]), PrincipalFactory(), ModelFactsFactory(), None, "predict", NOW)
    assert decision.canary_allowed
