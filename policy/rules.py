"""The rule catalogue: what a policy document may say and how each rule is checked.

Pure Python, no Django: the admin form, the import command and the evaluator
all validate through :func:`validate_document`, so a rule that the evaluator
could not evaluate is refused before it is ever stored.

A document is a list of rules::

    [{"id": "no-high-risk", "type": "model_access", "mode": "enforce",
      "params": {"max_risk_tier": "limited"}, "description": "optional text"}]

Each rule type is either a *restriction* (it may deny a request: model access,
data residency, purpose limitation, identity verification), an *obligation*
(it shapes how an allowed request is handled: human oversight, data
minimisation) or *supervision* (``monitoring``: thresholds that the
post-market monitors of the ``monitoring`` app apply to each window of live
statistics; never part of a request's decision).  ``mode`` is ``enforce`` or ``monitor``: a monitor rule is
evaluated and recorded but never changes the outcome, so a new rule can be
watched on real traffic before it blocks anyone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policy.types import ModelFacts
    from tenants.principal import Principal

# EU AI Act risk tiers, least to most severe.  The order matters: "at or above
# a tier" comparisons use the rank.
RISK_TIERS: tuple[str, ...] = ("minimal", "limited", "high", "prohibited")
TIER_RANK: dict[str, int] = {tier: rank for rank, tier in enumerate(RISK_TIERS)}
PROHIBITED_RANK = TIER_RANK["prohibited"]

MODES: tuple[str, ...] = ("enforce", "monitor")
RULE_KEYS = frozenset({"id", "type", "mode", "params", "description"})
RULE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")
ANY_REGION = "*"  # in a region list: any region; as a mapping key: every tenant region not listed
MAX_RETENTION_DAYS = 3650

# A restriction's check answers ``None`` (no objection) or ``(reason_code, reason)``.
# ``rank`` is the model's risk-tier rank, precomputed once per decision.
Check = Callable[["Principal", "ModelFacts", "str | None", int], "tuple[str, str] | None"]


class RuleError(ValueError):
    """A policy document that cannot be evaluated; the message names the rule and the problem."""


@dataclass(frozen=True)
class RuleType:
    """One entry of the catalogue: how to validate its params and what it produces."""

    name: str
    kind: str  # "restriction" or "obligation"
    purpose_dependent: bool
    validate: Callable[[dict[str, Any]], dict[str, Any]]
    doc: str


# --- parameter helpers ---------------------------------------------------------


def key_list(keys: Iterable[Any]) -> str:
    """Keys for an error message, sorted and comma-separated; non-text keys by ``repr``.

    YAML gives numbers, booleans or null as mapping keys, and those neither
    sort together with text nor join into a string.
    """
    return ", ".join(sorted(key if isinstance(key, str) else repr(key) for key in keys))


def _check_keys(params: dict[str, Any], *, allowed: set[str], required: set[str] = frozenset()) -> None:
    unknown = set(params) - allowed
    if unknown:
        raise RuleError(f"unknown parameter(s) {key_list(unknown)}; allowed: {key_list(allowed)}")
    missing = sorted(required - set(params))
    if missing:
        raise RuleError(f"missing parameter(s) {', '.join(missing)}")


def _tier(value: Any, name: str) -> str:
    # The type check comes first: an unhashable value (a list, an object) would
    # make the dict lookup raise TypeError instead of a RuleError.
    if not isinstance(value, str) or value not in TIER_RANK:
        raise RuleError(f"{name} must be one of {', '.join(RISK_TIERS)}, got {value!r}")
    return value


def _names(value: Any, name: str, *, allow_empty: bool = False) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise RuleError(f"{name} must be a list of non-empty strings")
    if not value and not allow_empty:
        raise RuleError(f"{name} must not be empty")
    return sorted(set(value))


def _regions(value: Any, name: str) -> list[str]:
    regions = _names(value, name)
    bad = [r for r in regions if r != ANY_REGION and not REGION_RE.match(r)]
    if bad:
        raise RuleError(
            f"{name} has invalid region code(s) {', '.join(map(repr, bad))} (lowercase letters, digits, '-')"
        )
    return regions


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise RuleError(f"{name} must be true or false, got {value!r}")
    return value


# --- per-type validation -------------------------------------------------------


def _validate_model_access(params: dict[str, Any]) -> dict[str, Any]:
    _check_keys(params, allowed={"models", "deny_models", "max_risk_tier"})
    if not params:
        raise RuleError("give at least one of models, deny_models, max_risk_tier")
    out: dict[str, Any] = {}
    if "models" in params:
        out["models"] = _names(params["models"], "models", allow_empty=True)
    if "deny_models" in params:
        out["deny_models"] = _names(params["deny_models"], "deny_models")
    if "max_risk_tier" in params:
        out["max_risk_tier"] = _tier(params["max_risk_tier"], "max_risk_tier")
    return out


def _validate_data_residency(params: dict[str, Any]) -> dict[str, Any]:
    _check_keys(params, allowed={"regions", "mapping"})
    if "regions" in params and "mapping" in params:
        raise RuleError("give either regions (for every tenant in scope) or mapping (by tenant region), not both")
    out: dict[str, Any] = {}
    if "regions" in params:
        out["regions"] = _regions(params["regions"], "regions")
    if "mapping" in params:
        mapping = params["mapping"]
        if not isinstance(mapping, dict) or not mapping:
            raise RuleError("mapping must be a non-empty object of tenant region -> list of model regions")
        # Checked before sorting: YAML can give non-text keys, which do not sort with text.
        for tenant_region in mapping:
            if not isinstance(tenant_region, str) or not (
                tenant_region == ANY_REGION or REGION_RE.match(tenant_region)
            ):
                raise RuleError(f"mapping has an invalid tenant region {tenant_region!r}")
        out["mapping"] = {}
        for tenant_region in sorted(mapping):
            out["mapping"][tenant_region] = _regions(mapping[tenant_region], f"mapping.{tenant_region}")
    return out


def _validate_purpose_limitation(params: dict[str, Any]) -> dict[str, Any]:
    _check_keys(params, allowed={"purposes", "min_risk_tier"})
    out: dict[str, Any] = {}
    if "purposes" in params:
        out["purposes"] = _names(params["purposes"], "purposes")
    if "min_risk_tier" in params:
        out["min_risk_tier"] = _tier(params["min_risk_tier"], "min_risk_tier")
    return out


def _validate_identity_verification(params: dict[str, Any]) -> dict[str, Any]:
    _check_keys(params, allowed={"min_risk_tier"}, required={"min_risk_tier"})
    return {"min_risk_tier": _tier(params["min_risk_tier"], "min_risk_tier")}


def _validate_human_oversight(params: dict[str, Any]) -> dict[str, Any]:
    _check_keys(params, allowed={"threshold", "min_risk_tier"}, required={"threshold"})
    threshold = params["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise RuleError(f"threshold must be a number, got {threshold!r}")
    if not 0 < threshold <= 1:
        raise RuleError(f"threshold must be in (0, 1], got {threshold!r}")
    out: dict[str, Any] = {"threshold": float(threshold)}
    if "min_risk_tier" in params:
        out["min_risk_tier"] = _tier(params["min_risk_tier"], "min_risk_tier")
    return out


def _validate_data_minimisation(params: dict[str, Any]) -> dict[str, Any]:
    _check_keys(params, allowed={"retain_raw_input", "retention_days"})
    retain = _bool(params.get("retain_raw_input", False), "retain_raw_input")
    out: dict[str, Any] = {"retain_raw_input": retain}
    if retain:
        days = params.get("retention_days")
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_RETENTION_DAYS:
            raise RuleError(
                f"retention_days must be an integer from 1 to {MAX_RETENTION_DAYS} when raw inputs are kept"
            )
        out["retention_days"] = days
    elif params.get("retention_days") not in (None, 0):
        raise RuleError("retention_days only applies when retain_raw_input is true")
    return out


def _validate_canary_eligibility(params: dict[str, Any]) -> dict[str, Any]:
    _check_keys(params, allowed={"tenants", "exclude_tenants", "exclude_regions", "exclude_purposes"})
    if not params:
        raise RuleError("give at least one of tenants, exclude_tenants, exclude_regions, exclude_purposes")
    out: dict[str, Any] = {}
    if "tenants" in params:
        # An empty opt-in list is meaningful: no tenant may be served a canary.
        out["tenants"] = _names(params["tenants"], "tenants", allow_empty=True)
    if "exclude_tenants" in params:
        out["exclude_tenants"] = _names(params["exclude_tenants"], "exclude_tenants")
    if "exclude_regions" in params:
        out["exclude_regions"] = _regions(params["exclude_regions"], "exclude_regions")
    if "exclude_purposes" in params:
        out["exclude_purposes"] = _names(params["exclude_purposes"], "exclude_purposes")
    return out


# --- monitoring (post-market supervision, EU AI Act Art. 72) ---------------------

#: Monitored measures and whether a breach is a value above (``max``) or below (``min``) the threshold.
MONITORING_THRESHOLDS: dict[str, str] = {
    "feature_psi": "max",  # the largest population stability index over the input features
    "feature_p_value": "min",  # the smallest two-sample p-value over the features (Bonferroni-adjusted)
    "prediction_psi": "max",
    "prediction_p_value": "min",
    "confidence_psi": "max",
    "confidence_p_value": "min",
    "review_rate": "max",  # flagged for human review / instances
    "override_rate": "max",  # reviewer overrides / decisions made in the window
    "client_error_rate": "max",  # 4xx other than denials / requests
    "denial_rate": "max",  # policy denials / requests
    "server_error_rate": "max",  # 5xx / requests
}
#: ``alert`` (the default) opens an alert on a breach; ``kill_switch`` also engages the model's kill switch;
#: ``record`` keeps the breach in the window's result only.
MONITORING_ACTIONS: tuple[str, ...] = ("alert", "kill_switch", "record")
MAX_MIN_INSTANCES = 10_000_000


def _validate_monitoring(params: dict[str, Any]) -> dict[str, Any]:
    _check_keys(params, allowed={"thresholds", "min_instances", "action", "min_risk_tier"}, required={"thresholds"})
    thresholds = params["thresholds"]
    if not isinstance(thresholds, dict) or not thresholds:
        raise RuleError(
            f"thresholds must be a non-empty object of measure -> number ({', '.join(MONITORING_THRESHOLDS)})"
        )
    unknown = set(thresholds) - set(MONITORING_THRESHOLDS)
    if unknown:
        raise RuleError(f"unknown measure(s) {key_list(unknown)}; known: {', '.join(MONITORING_THRESHOLDS)}")
    out_thresholds: dict[str, float] = {}
    for measure in sorted(thresholds):
        value = thresholds[measure]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise RuleError(f"thresholds.{measure} must be a finite number, got {value!r}")
        if measure.endswith("_psi"):
            if value < 0:
                raise RuleError(f"thresholds.{measure} must not be negative (a population stability index)")
        elif not 0 <= value <= 1:
            raise RuleError(f"thresholds.{measure} must be in [0, 1] (a rate or p-value), got {value!r}")
        out_thresholds[measure] = float(value)
    out: dict[str, Any] = {"thresholds": out_thresholds}
    min_instances = params.get("min_instances", 100)
    if (
        isinstance(min_instances, bool)
        or not isinstance(min_instances, int)
        or not 1 <= min_instances <= MAX_MIN_INSTANCES
    ):
        raise RuleError(f"min_instances must be an integer from 1 to {MAX_MIN_INSTANCES}, got {min_instances!r}")
    out["min_instances"] = min_instances
    action = params.get("action", "alert")
    if not isinstance(action, str) or action not in MONITORING_ACTIONS:
        raise RuleError(f"action must be one of {', '.join(MONITORING_ACTIONS)}, got {action!r}")
    out["action"] = action
    if "min_risk_tier" in params:
        out["min_risk_tier"] = _tier(params["min_risk_tier"], "min_risk_tier")
    return out


def scope_rules_check(scope: str, rules: list[dict[str, Any]]) -> None:
    """Monitoring rules watch a model version's traffic as a whole: only global and model policies hold them.

    Live statistics are counted per model version, never per tenant, so a
    tenant policy's monitoring rule could not be evaluated; it is refused
    instead of being silently ignored.
    """
    if scope == "tenant":
        for rule in rules:
            if rule.get("type") == "monitoring":
                raise RuleError(
                    f"rule {rule.get('id')!r}: monitoring rules belong in global or model policies, not tenant ones"
                )


RULE_TYPES: dict[str, RuleType] = {
    t.name: t
    for t in (
        RuleType(
            "model_access",
            "restriction",
            False,
            _validate_model_access,
            "models (allow-list), deny_models, max_risk_tier: which models a tenant may call",
        ),
        RuleType(
            "data_residency",
            "restriction",
            False,
            _validate_data_residency,
            "regions, or mapping {tenant region: [model regions]} ('*' = any / every other region); "
            "default: the tenant's own region",
        ),
        RuleType(
            "purpose_limitation",
            "restriction",
            True,
            _validate_purpose_limitation,
            "a declared purpose among the tenant's approved purposes (optionally only these purposes)",
        ),
        RuleType(
            "identity_verification",
            "restriction",
            False,
            _validate_identity_verification,
            "min_risk_tier: models at or above it require an identity-verified tenant",
        ),
        RuleType(
            "human_oversight",
            "obligation",
            False,
            _validate_human_oversight,
            "threshold: classifier predictions with top probability below it need human review "
            "(regression values need it outside the plausible range of the model card)",
        ),
        RuleType(
            "data_minimisation",
            "obligation",
            False,
            _validate_data_minimisation,
            "retain_raw_input (default false) and retention_days",
        ),
        RuleType(
            "canary_eligibility",
            "obligation",
            True,
            _validate_canary_eligibility,
            "tenants (opt-in: only these), exclude_tenants, exclude_regions (tenant regions), exclude_purposes: "
            "who may be served a canary version during a rollout (others get the stable version)",
        ),
        RuleType(
            "monitoring",
            "supervision",
            False,
            _validate_monitoring,
            "thresholds {measure: number} for each window of live statistics (drift PSI and p-values, review, "
            "override, error, denial and 5xx rates), min_instances (default 100), action alert (default), kill_switch "
            "(alert and the model's kill switch) or record; "
            "monitor mode records breaches without acting",
        ),
    )
}


def _label(index: int, rule: Any) -> str:
    rule_id = rule.get("id") if isinstance(rule, dict) else None
    return f"rule {index + 1}" + (f" ({rule_id!r})" if isinstance(rule_id, str) else "")


def validate_rule(rule: Any, index: int = 0) -> dict[str, Any]:
    """Validate one rule and return its normalised form; raise :class:`RuleError` naming it."""
    label = _label(index, rule)
    if not isinstance(rule, dict):
        raise RuleError(f"{label}: a rule must be an object with id, type, mode and params")
    unknown = set(rule) - RULE_KEYS
    if unknown:
        raise RuleError(f"{label}: unknown key(s) {key_list(unknown)}; a rule has {key_list(RULE_KEYS)}")
    rule_id = rule.get("id")
    if not isinstance(rule_id, str) or not RULE_ID_RE.match(rule_id):
        raise RuleError(f"{label}: id must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    rule_type = rule.get("type")
    # Type first: an unhashable value would make the dict lookup raise TypeError.
    if not isinstance(rule_type, str) or rule_type not in RULE_TYPES:
        raise RuleError(f"{label}: unknown rule type {rule_type!r}; known types: {', '.join(RULE_TYPES)}")
    mode = rule.get("mode")
    if mode not in MODES:
        raise RuleError(f"{label}: mode must be 'enforce' or 'monitor', got {mode!r}")
    params = rule.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RuleError(f"{label}: params must be an object")
    try:
        normalised = RULE_TYPES[rule_type].validate(params)
    except RuleError as exc:
        raise RuleError(f"{label}: {rule_type}: {exc}") from None
    out: dict[str, Any] = {"id": rule_id, "type": rule_type, "mode": mode, "params": normalised}
    description = rule.get("description")
    if description not in (None, ""):
        if not isinstance(description, str):
            raise RuleError(f"{label}: description must be text")
        out["description"] = description
    return out


def validate_document(document: Any) -> list[dict[str, Any]]:
    """Validate a whole rule document and return it normalised (stable key order, sorted lists).

    Raises :class:`RuleError` for anything the evaluator could not evaluate:
    not a list, unknown type or mode, bad parameters, duplicate rule ids.
    """
    if not isinstance(document, list):
        raise RuleError("a policy document must be a list of rules")
    rules = [validate_rule(rule, index) for index, rule in enumerate(document)]
    seen: set[str] = set()
    for rule in rules:
        if rule["id"] in seen:
            raise RuleError(f"rule id {rule['id']!r} is used more than once; ids must be unique within a policy")
        seen.add(rule["id"])
    return rules


# --- checks: compiled closures, one per restriction rule ----------------------


def _truncate(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_check(rule_type: str, params: dict[str, Any]) -> Check:
    """Compile a validated restriction into a closure over precomputed sets."""
    if rule_type == "model_access":
        allowed = frozenset(params["models"]) if "models" in params else None
        denied = frozenset(params.get("deny_models", ()))
        max_tier = params.get("max_risk_tier")
        max_rank = TIER_RANK[max_tier] if max_tier else PROHIBITED_RANK

        def model_access(principal: Principal, model: ModelFacts, purpose: str | None, rank: int):
            if model.name in denied or (allowed is not None and model.name not in allowed):
                return "model_not_allowed", f"Model '{model.name}' is not available to your tenant."
            if rank > max_rank:
                return (
                    "risk_tier_not_allowed",
                    f"Model '{model.name}' has risk tier '{model.risk_tier}'; "
                    f"your tenant may use models up to '{max_tier}'.",
                )
            return None

        return model_access

    if rule_type == "data_residency":
        fixed = frozenset(params["regions"]) if "regions" in params else None
        mapping = {k: frozenset(v) for k, v in params.get("mapping", {}).items()}
        fallback = mapping.pop(ANY_REGION, None)

        def data_residency(principal: Principal, model: ModelFacts, purpose: str | None, rank: int):
            if fixed is not None:
                allowed = fixed
            else:
                allowed = mapping.get(principal.region) or fallback or frozenset((principal.region,))
            if model.region in allowed or ANY_REGION in allowed:
                return None
            return (
                "data_residency",
                f"Model '{model.name}' is deployed in region '{model.region}', outside the regions "
                f"allowed for your data ({', '.join(sorted(allowed))}).",
            )

        return data_residency

    if rule_type == "purpose_limitation":
        restricted = frozenset(params["purposes"]) if "purposes" in params else None
        min_rank = TIER_RANK[params.get("min_risk_tier", "minimal")]

        def purpose_limitation(principal: Principal, model: ModelFacts, purpose: str | None, rank: int):
            if rank < min_rank:
                return None
            if not purpose:
                return (
                    "purpose_required",
                    "This request must declare its purpose (X-Purpose header or 'purpose' field).",
                )
            if purpose not in principal.approved_purposes or (restricted is not None and purpose not in restricted):
                return (
                    "purpose_not_approved",
                    f"Purpose '{_truncate(purpose)}' is not among your tenant's approved purposes for this model.",
                )
            return None

        return purpose_limitation

    if rule_type == "identity_verification":
        min_rank = TIER_RANK[params["min_risk_tier"]]

        def identity_verification(principal: Principal, model: ModelFacts, purpose: str | None, rank: int):
            if rank >= min_rank and not principal.identity_verified:
                return (
                    "identity_verification_required",
                    f"Model '{model.name}' (risk tier '{model.risk_tier}') requires an identity-verified tenant.",
                )
            return None

        return identity_verification

    raise RuleError(f"{rule_type!r} is not a restriction")


# A canary-eligibility check answers ``None`` (this caller may be served a canary) or the reason it may not.
CanaryCheck = Callable[["Principal", "str | None"], "str | None"]


def build_canary_check(params: dict[str, Any]) -> CanaryCheck:
    """Compile a validated ``canary_eligibility`` rule into a closure over precomputed sets."""
    opted_in = frozenset(params["tenants"]) if "tenants" in params else None
    excluded = frozenset(params.get("exclude_tenants", ()))
    regions = frozenset(params.get("exclude_regions", ()))
    purposes = frozenset(params.get("exclude_purposes", ()))

    def canary_eligibility(principal: Principal, purpose: str | None) -> str | None:
        if opted_in is not None and principal.tenant_slug not in opted_in:
            return "tenant_not_opted_in"
        if principal.tenant_slug in excluded:
            return "tenant_excluded"
        if principal.region in regions or ANY_REGION in regions:
            return "region_excluded"
        if purpose and purpose in purposes:
            return "purpose_excluded"
        return None

    return canary_eligibility
