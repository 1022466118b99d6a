"""The policy evaluator: pure Python, no Django, the hot path of every request.

The value types shared across apps (``ModelFacts`` describes the model a
request targets, ``Decision`` is the evaluator's answer) live in
:mod:`policy.types`; they are imported here, so ``policy.evaluator.ModelFacts``
still works.

:func:`compile_policy_set` turns the stored policies (their current versions,
enabled flags and effective windows) and the active kill switches into a
:class:`PolicySet`: plain tuples, dicts and frozensets, with each restriction
rule compiled into a closure.  :func:`decide` then answers one request from
that state without any I/O.  The Django layer (``policy.selectors``) caches one
``PolicySet`` per process and drops it when the policy generation moves.

How a decision is reached, in order of precedence:

1. kill switches (tenant, then key, then model): an operator's immediate block;
2. built-in rules: a ``prohibited`` model is always refused, an unknown risk
   tier is refused (fail closed), a key restricted to some models may call
   only those;
3. the rules of every policy that applies to the request and is in force at
   ``now`` -- global policies, then the tenant's, then the model's, each group
   by name, rules in document order.  Every restriction must pass: the first
   enforce rule that objects decides the denial; every monitor rule that
   objects is listed in ``monitor_denials`` and changes nothing.

Obligations combine as follows: the review threshold is the highest one of the
applicable enforce ``human_oversight`` rules (more oversight never hurts);
``data_minimisation`` comes from the most specific scope (model over tenant
over global), and within one scope the most restrictive rule wins.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from policy.rules import (
    PROHIBITED_RANK,
    RULE_TYPES,
    TIER_RANK,
    RuleError,
    build_canary_check,
    build_check,
    scope_rules_check,
    validate_document,
)
from policy.types import Decision, ModelFacts

if TYPE_CHECKING:
    from tenants.principal import Principal

SCOPES: tuple[str, ...] = ("global", "tenant", "model")
KILL_SWITCH_TARGETS: tuple[str, ...] = ("tenant", "key", "model")

ALLOWED_CODE = "allowed"
ALLOWED_REASON = "Allowed by policy."


@dataclass(frozen=True)
class PolicySpec:
    """One stored policy with its current version, as the Django layer hands it over."""

    name: str
    scope: str
    target: str  # tenant slug, model name, or "" for global
    version: int
    rules: list[dict[str, Any]]
    enabled: bool = True
    effective_from: datetime | None = None
    effective_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule ready to run: restrictions carry a check closure, obligations their precomputed values."""

    rule_id: str  # qualified: "<policy name>/<rule id>"
    rule_type: str
    enforce: bool
    purpose_dependent: bool
    check: Any  # policy.rules.Check; policy.rules.CanaryCheck for canary eligibility; None otherwise
    # Obligations, precomputed so a decision reads attributes, not params.
    min_rank: int = 0
    threshold: float = 0.0
    retain: bool = False
    days: int = 0
    #: Supervision rules (``monitoring``): the validated params, read by the monitors.
    params: Any = None


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """One policy version in force between ``active_from`` and ``active_until`` (epoch seconds)."""

    name: str
    scope_rank: int  # 0 global, 1 tenant, 2 model: specificity for obligations
    label: str  # "name@version"
    active_from: float | None
    active_until: float | None
    restrictions: tuple[CompiledRule, ...]
    listing_restrictions: tuple[CompiledRule, ...]  # the purpose-independent ones
    obligations: tuple[CompiledRule, ...]
    supervision: tuple[CompiledRule, ...] = ()


@dataclass(frozen=True)
class PolicySet:
    """Everything :func:`decide` reads, precomputed for lookups by tenant and model."""

    global_policies: tuple[CompiledPolicy, ...] = ()
    tenant_policies: dict[str, tuple[CompiledPolicy, ...]] = field(default_factory=dict)
    model_policies: dict[str, tuple[CompiledPolicy, ...]] = field(default_factory=dict)
    killed_tenants: frozenset[str] = frozenset()
    killed_keys: frozenset[str] = frozenset()
    killed_models: frozenset[str] = frozenset()

    @property
    def policy_count(self) -> int:
        """How many enabled policies were compiled."""
        return (
            len(self.global_policies)
            + sum(len(p) for p in self.tenant_policies.values())
            + sum(len(p) for p in self.model_policies.values())
        )


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def compile_policy(spec: PolicySpec) -> CompiledPolicy:
    """Validate and compile one policy; raise :class:`RuleError` if it cannot be evaluated."""
    if spec.scope not in SCOPES:
        raise RuleError(f"policy {spec.name!r}: unknown scope {spec.scope!r}")
    restrictions: list[CompiledRule] = []
    obligations: list[CompiledRule] = []
    supervision: list[CompiledRule] = []
    try:
        rules = validate_document(spec.rules)
        scope_rules_check(spec.scope, rules)
    except RuleError as exc:
        raise RuleError(f"policy {spec.name!r}: {exc}") from None
    for rule in rules:
        rule_type = RULE_TYPES[rule["type"]]
        is_restriction = rule_type.kind == "restriction"
        params = rule["params"]
        if rule_type.kind == "supervision":
            supervision.append(
                CompiledRule(
                    rule_id=f"{spec.name}/{rule['id']}",
                    rule_type=rule["type"],
                    enforce=rule["mode"] == "enforce",
                    purpose_dependent=False,
                    check=None,
                    min_rank=TIER_RANK[params.get("min_risk_tier", "minimal")],
                    params=params,
                )
            )
            continue
        compiled = CompiledRule(
            rule_id=f"{spec.name}/{rule['id']}",
            rule_type=rule["type"],
            enforce=rule["mode"] == "enforce",
            purpose_dependent=rule_type.purpose_dependent,
            check=build_check(rule["type"], params)
            if is_restriction
            else build_canary_check(params)
            if rule["type"] == "canary_eligibility"
            else None,
            min_rank=TIER_RANK[params.get("min_risk_tier", "minimal")],
            threshold=params.get("threshold", 0.0),
            retain=params.get("retain_raw_input", False),
            days=params.get("retention_days", 0),
        )
        (restrictions if is_restriction else obligations).append(compiled)
    return CompiledPolicy(
        name=spec.name,
        scope_rank=SCOPES.index(spec.scope),
        label=f"{spec.name}@{spec.version}",
        active_from=_epoch(spec.effective_from),
        active_until=_epoch(spec.effective_until),
        restrictions=tuple(restrictions),
        listing_restrictions=tuple(r for r in restrictions if not r.purpose_dependent),
        obligations=tuple(obligations),
        supervision=tuple(supervision),
    )


def compile_policy_set(specs: Iterable[PolicySpec], kill_switches: Iterable[tuple[str, str]] = ()) -> PolicySet:
    """Compile every enabled policy and the active kill switches ``(target_type, target)``."""
    global_policies: list[CompiledPolicy] = []
    tenant_policies: dict[str, list[CompiledPolicy]] = {}
    model_policies: dict[str, list[CompiledPolicy]] = {}
    for spec in sorted(specs, key=lambda s: s.name):
        if not spec.enabled:
            continue
        compiled = compile_policy(spec)
        if spec.scope == "global":
            global_policies.append(compiled)
        elif spec.scope == "tenant":
            tenant_policies.setdefault(spec.target, []).append(compiled)
        else:
            model_policies.setdefault(spec.target, []).append(compiled)
    killed: dict[str, set[str]] = {kind: set() for kind in KILL_SWITCH_TARGETS}
    for target_type, target in kill_switches:
        if target_type not in killed:
            raise RuleError(f"unknown kill switch target type {target_type!r}")
        killed[target_type].add(target)
    return PolicySet(
        global_policies=tuple(global_policies),
        tenant_policies={k: tuple(v) for k, v in tenant_policies.items()},
        model_policies={k: tuple(v) for k, v in model_policies.items()},
        killed_tenants=frozenset(killed["tenant"]),
        killed_keys=frozenset(killed["key"]),
        killed_models=frozenset(killed["model"]),
    )


def _in_force(policy: CompiledPolicy, t: float) -> bool:
    return (policy.active_from is None or policy.active_from <= t) and (
        policy.active_until is None or t < policy.active_until
    )


def applicable_policies(policy_set: PolicySet, tenant_slug: str, model_name: str, t: float) -> list[CompiledPolicy]:
    """The policies that apply to this tenant and model and are in force at ``t`` (epoch seconds)."""
    candidates = (
        policy_set.global_policies
        + policy_set.tenant_policies.get(tenant_slug, ())
        + policy_set.model_policies.get(model_name, ())
    )
    return [p for p in candidates if _in_force(p, t)]


def _kill_switch(policy_set: PolicySet, principal: Principal, model: ModelFacts) -> tuple[str, str, str] | None:
    # The operator's reason is internal (it may name an investigation); the
    # caller is told only what is blocked.
    if principal.tenant_slug in policy_set.killed_tenants:
        return "kill_switch/tenant", "kill_switch", "Access for your tenant has been suspended by the operator."
    if principal.key_prefix in policy_set.killed_keys:
        return "kill_switch/key", "kill_switch", "This API key has been suspended by the operator."
    if model.name in policy_set.killed_models:
        return "kill_switch/model", "kill_switch", f"Model '{model.name}' has been withdrawn by the operator."
    return None


def _builtin(principal: Principal, model: ModelFacts) -> tuple[str, str, str] | None:
    rank = TIER_RANK.get(model.risk_tier)
    if rank is None:
        return (
            "builtin/unknown-risk-tier",
            "unknown_risk_tier",
            f"Model '{model.name}' has no recognised risk tier and cannot be used.",
        )
    if rank == PROHIBITED_RANK:
        return (
            "builtin/prohibited-risk-tier",
            "prohibited_risk_tier",
            f"Model '{model.name}' is in the prohibited risk tier and cannot be used.",
        )
    if principal.allowed_models and model.name not in principal.allowed_models:
        return "builtin/key-allowed-models", "model_not_allowed", f"This API key may not use model '{model.name}'."
    return None


def decide(
    policy_set: PolicySet,
    principal: Principal,
    model: ModelFacts,
    purpose: str | None = None,
    action: str = "predict",
    now: datetime | float | None = None,
) -> Decision:
    """Decide one request from compiled state; never raises for a denial, never does I/O.

    ``action="list"`` evaluates only the purpose-independent restrictions: the
    model listing shows exactly the models a caller could call.  ``now`` is a
    timezone-aware datetime or epoch seconds (default: the current time).
    """
    if now is None:
        t = time.time()
    elif isinstance(now, datetime):
        t = now.timestamp()
    else:
        t = float(now)
    policies = applicable_policies(policy_set, principal.tenant_slug, model.name, t)
    denial = _kill_switch(policy_set, principal, model) or _builtin(principal, model)
    # An unknown tier is checked as the most severe one, so no rule relaxes it.
    rank = TIER_RANK.get(model.risk_tier, PROHIBITED_RANK)
    listing = action == "list"
    monitor_denials: list[dict] = []
    monitor_effects: list[dict] = []
    threshold: float | None = None
    # (scope rank, retain, days): the most specific scope wins, then the most restrictive.
    minimisation: tuple[int, bool, int] | None = None
    # During a rollout, whether this caller may be served the canary: every enforce rule must agree.
    canary_allowed = True

    for policy in policies:
        for rule in policy.listing_restrictions if listing else policy.restrictions:
            objection = rule.check(principal, model, purpose, rank)
            if objection is None:
                continue
            if rule.enforce:
                if denial is None:
                    denial = (rule.rule_id, objection[0], objection[1])
            else:
                monitor_denials.append({"rule_id": rule.rule_id, "reason_code": objection[0], "reason": objection[1]})
        for rule in policy.obligations:
            if rank < rule.min_rank:
                continue
            if rule.rule_type == "human_oversight":
                if not rule.enforce:
                    monitor_effects.append(
                        {"rule_id": rule.rule_id, "effect": "review_threshold", "threshold": rule.threshold}
                    )
                elif threshold is None or rule.threshold > threshold:
                    threshold = rule.threshold
            elif rule.rule_type == "canary_eligibility":
                objection = rule.check(principal, purpose)
                if objection is None:
                    continue
                if rule.enforce:
                    canary_allowed = False
                else:
                    monitor_effects.append(
                        {"rule_id": rule.rule_id, "effect": "canary_ineligible", "reason_code": objection}
                    )
            elif not rule.enforce:  # data_minimisation, monitor mode
                monitor_effects.append(
                    {
                        "rule_id": rule.rule_id,
                        "effect": "data_minimisation",
                        "retain_raw_input": rule.retain,
                        "retention_days": rule.days,
                    }
                )
            elif minimisation is None or policy.scope_rank > minimisation[0]:
                minimisation = (policy.scope_rank, rule.retain, rule.days)
            elif policy.scope_rank == minimisation[0]:
                if not rule.retain:
                    minimisation = (policy.scope_rank, False, 0)
                elif minimisation[1]:
                    minimisation = (policy.scope_rank, True, min(rule.days, minimisation[2]))

    retain_raw = bool(minimisation and minimisation[1])
    if denial is None:
        rule_id, code, reason, allowed = "", ALLOWED_CODE, ALLOWED_REASON, True
    else:
        (rule_id, code, reason), allowed = denial, False
    return Decision(
        allowed=allowed,
        rule_id=rule_id,
        reason_code=code,
        reason=reason,
        policy_versions=",".join(p.label for p in policies),
        monitor_denials=tuple(monitor_denials),
        review_threshold=threshold,
        retain_raw_input=retain_raw,
        raw_input_retention_days=minimisation[2] if retain_raw and minimisation else 0,
        monitor_effects=tuple(monitor_effects),
        canary_allowed=canary_allowed,
    )


def monitoring_rules(
    policy_set: PolicySet, *, model: ModelFacts, now: datetime | float | None = None
) -> list[tuple[str, CompiledRule]]:
    """The ``monitoring`` rules that watch ``model`` at ``now``: ``(policy label, rule)`` pairs.

    Global and model policies in force whose rule's ``min_risk_tier`` the
    model reaches, in the usual order (global, then the model's, by name).
    """
    if now is None:
        t = time.time()
    elif isinstance(now, datetime):
        t = now.timestamp()
    else:
        t = float(now)
    rank = TIER_RANK.get(model.risk_tier, PROHIBITED_RANK)
    candidates = policy_set.global_policies + policy_set.model_policies.get(model.name, ())
    return [
        (policy.label, rule)
        for policy in candidates
        if _in_force(policy, t)
        for rule in policy.supervision
        if rank >= rule.min_rank
    ]
