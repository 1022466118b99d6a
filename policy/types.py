"""Value types of the policy app shared across apps and between its own modules.

``ModelFacts`` (the model a request targets) and ``Decision`` (the
evaluator's answer) are here, not in :mod:`policy.evaluator`, so that
:mod:`policy.rules` (which the evaluator imports) can use them without an
import cycle.  Pure Python: no Django.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelFacts:
    """What policy needs to know about a model version."""

    name: str
    version: int
    risk_tier: str
    region: str


@dataclass(frozen=True)
class Decision:
    """The outcome of evaluating every applicable rule for one request.

    ``rule_id`` is qualified by the policy that holds the rule
    (``"baseline/identity-high"``; built-ins are ``"builtin/..."`` and kill
    switches ``"kill_switch/<target type>"``); it is ``""`` when the request
    is allowed.  ``policy_versions`` names every policy in force for this
    request as ``name@version`` and nothing about other tenants' policies.
    ``monitor_effects`` lists what monitor-mode obligations would have done.
    """

    allowed: bool
    rule_id: str
    reason_code: str
    reason: str
    policy_versions: str
    monitor_denials: tuple[dict, ...] = field(default_factory=tuple)
    review_threshold: float | None = None
    retain_raw_input: bool = False
    raw_input_retention_days: int = 0
    monitor_effects: tuple[dict, ...] = field(default_factory=tuple)
    #: During a rollout: False when an enforce ``canary_eligibility`` rule keeps this caller on stable.
    canary_allowed: bool = True
