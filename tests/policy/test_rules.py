"""Validation of rule documents: what cannot be evaluated is refused with a message naming the rule."""

from __future__ import annotations

import pytest

from policy.rules import RULE_TYPES, RuleError, validate_document

pytestmark = pytest.mark.embedded


def rule(rule_type: str, params: dict | None = None, *, mode: str = "enforce", rule_id: str = "r1") -> dict:
    return {"id": rule_id, "type": rule_type, "mode": mode, "params": params or {}}


VALID = [
    rule("model_access", {"models": ["digits"], "max_risk_tier": "limited"}),
    rule("model_access", {"deny_models": ["legacy"]}),
    rule("data_residency", {}),
    rule("data_residency", {"regions": ["eu", "us"]}),
    rule("data_residency", {"mapping": {"cn": ["cn"], "*": ["*"]}}),
    rule("purpose_limitation", {}),
    rule("purpose_limitation", {"purposes": ["research"], "min_risk_tier": "high"}),
    rule("identity_verification", {"min_risk_tier": "high"}),
    rule("human_oversight", {"threshold": 0.6}),
    rule("human_oversight", {"threshold": 1, "min_risk_tier": "high"}),
    rule("data_minimisation", {}),
    rule("data_minimisation", {"retain_raw_input": True, "retention_days": 30}),
    rule("canary_eligibility", {"tenants": []}),
    rule("canary_eligibility", {"exclude_regions": ["cn"], "exclude_purposes": ["medical"], "exclude_tenants": ["x"]}),
    rule("monitoring", {"thresholds": {"feature_psi": 0.25}}),
    rule(
        "monitoring",
        {"thresholds": {"denial_rate": 0.5, "prediction_p_value": 0.001}, "min_instances": 50, "action": "kill_switch"},
        mode="monitor",
    ),
]


@pytest.mark.parametrize("document", [[r] for r in VALID], ids=[r["type"] for r in VALID])
def test_valid_rules_are_accepted_and_normalised(document):
    normalised = validate_document(document)
    assert normalised[0]["id"] == "r1"
    assert list(normalised[0]) == ["id", "type", "mode", "params"]
    assert validate_document(normalised) == normalised


def test_every_rule_type_has_a_valid_example():
    assert {r["type"] for r in VALID} == set(RULE_TYPES)


REFUSED = [
    ("not a list", {"id": "r1"}, "must be a list of rules"),
    ("rule not an object", ["model_access"], "must be an object"),
    ("unknown type", [rule("geo_fence")], "unknown rule type 'geo_fence'"),
    ("unknown mode", [rule("data_residency", mode="shadow")], "mode must be 'enforce' or 'monitor'"),
    ("missing mode", [{"id": "r1", "type": "data_residency", "params": {}}], "mode must be"),
    ("bad id", [rule("data_residency", rule_id="has space")], "id must be"),
    ("duplicate ids", [rule("data_residency"), rule("purpose_limitation")], "used more than once"),
    ("unknown rule key", [{**rule("data_residency"), "when": "always"}], "unknown key(s) when"),
    ("params not object", [{**rule("data_residency"), "params": ["eu"]}], "params must be an object"),
    ("unknown param", [rule("identity_verification", {"min_risk_tier": "high", "x": 1})], "unknown parameter(s) x"),
    ("missing param", [rule("identity_verification", {})], "missing parameter(s) min_risk_tier"),
    ("bad tier", [rule("identity_verification", {"min_risk_tier": "severe"})], "min_risk_tier must be one of"),
    ("empty model_access", [rule("model_access", {})], "at least one of"),
    ("models not a list", [rule("model_access", {"models": "digits"})], "models must be a list"),
    ("regions and mapping", [rule("data_residency", {"regions": ["eu"], "mapping": {"eu": ["eu"]}})], "not both"),
    ("bad region", [rule("data_residency", {"regions": ["EU West"]})], "invalid region code"),
    ("empty mapping", [rule("data_residency", {"mapping": {}})], "mapping must be a non-empty object"),
    ("threshold too high", [rule("human_oversight", {"threshold": 1.5})], "threshold must be in (0, 1]"),
    ("threshold zero", [rule("human_oversight", {"threshold": 0})], "threshold must be in (0, 1]"),
    ("threshold text", [rule("human_oversight", {"threshold": "0.6"})], "threshold must be a number"),
    ("threshold bool", [rule("human_oversight", {"threshold": True})], "threshold must be a number"),
    ("retain not bool", [rule("data_minimisation", {"retain_raw_input": "no"})], "must be true or false"),
    ("retain without days", [rule("data_minimisation", {"retain_raw_input": True})], "retention_days must be"),
    (
        "days without retain",
        [rule("data_minimisation", {"retain_raw_input": False, "retention_days": 9})],
        "only applies when retain_raw_input is true",
    ),
    ("empty purposes", [rule("purpose_limitation", {"purposes": []})], "purposes must not be empty"),
    ("empty canary_eligibility", [rule("canary_eligibility", {})], "give at least one of tenants"),
    ("canary tenants text", [rule("canary_eligibility", {"tenants": "acme"})], "tenants must be a list"),
    ("canary bad region", [rule("canary_eligibility", {"exclude_regions": ["CN!"]})], "invalid region code"),
    ("canary unknown param", [rule("canary_eligibility", {"percent": 5})], "unknown parameter(s) percent"),
    ("monitoring without thresholds", [rule("monitoring", {})], "missing parameter(s) thresholds"),
    ("monitoring empty thresholds", [rule("monitoring", {"thresholds": {}})], "thresholds must be a non-empty"),
    ("monitoring thresholds a list", [rule("monitoring", {"thresholds": [0.2]})], "thresholds must be a non-empty"),
    ("monitoring unknown measure", [rule("monitoring", {"thresholds": {"accuracy": 0.9}})], "unknown measure(s)"),
    ("monitoring threshold text", [rule("monitoring", {"thresholds": {"feature_psi": "x"}})], "finite number"),
    ("monitoring threshold nan", [rule("monitoring", {"thresholds": {"feature_psi": float("nan")}})], "finite"),
    ("monitoring threshold bool", [rule("monitoring", {"thresholds": {"denial_rate": True}})], "finite number"),
    ("monitoring rate above one", [rule("monitoring", {"thresholds": {"denial_rate": 2}})], "must be in [0, 1]"),
    ("monitoring negative psi", [rule("monitoring", {"thresholds": {"feature_psi": -1}})], "must not be negative"),
    (
        "monitoring bad action",
        [rule("monitoring", {"thresholds": {"feature_psi": 0.2}, "action": "page"})],
        "action must be one of",
    ),
    (
        "monitoring min_instances zero",
        [rule("monitoring", {"thresholds": {"feature_psi": 0.2}, "min_instances": 0})],
        "min_instances must be",
    ),
    # Non-text values and keys (JSON lists/objects, YAML numbers/null) must give a RuleError, not a TypeError.
    ("type a list", [{**rule("data_residency"), "type": ["x"]}], "unknown rule type ['x']"),
    ("type an object", [{**rule("data_residency"), "type": {}}], "unknown rule type {}"),
    ("tier an object", [rule("model_access", {"max_risk_tier": {}})], "max_risk_tier must be one of"),
    ("tier a list", [rule("identity_verification", {"min_risk_tier": ["high"]})], "min_risk_tier must be one of"),
    ("non-text rule key", [{**rule("data_residency"), 1: "x", "when": "y"}], "unknown key(s) 1, when"),
    ("non-text param key", [rule("purpose_limitation", {None: 1, "x": 2})], "unknown parameter(s) None, x"),
    (
        "non-text mapping key",
        [rule("data_residency", {"mapping": {1: ["eu"], "eu": ["eu"]}})],
        "invalid tenant region 1",
    ),
]


@pytest.mark.parametrize(("document", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_unevaluable_documents_are_refused_with_a_clear_message(document, message):
    with pytest.raises(RuleError) as excinfo:
        validate_document(document)
    assert message in str(excinfo.value)


def test_message_names_the_rule_by_position_and_id():
    with pytest.raises(RuleError, match=r"rule 2 \('second'\): human_oversight: threshold"):
        validate_document([rule("data_residency"), rule("human_oversight", {"threshold": 7}, rule_id="second")])
