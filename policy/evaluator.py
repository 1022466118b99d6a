"""The policy evaluator: pure Python, no Django, the hot path of every request.

This module starts with the value types shared across apps (``ModelFacts``
describes the model a request targets, ``Decision`` is the evaluator's answer).
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
    """The outcome of evaluating every applicable rule for one request."""

    allowed: bool
    rule_id: str
    reason_code: str
    reason: str
    policy_versions: str
    monitor_denials: tuple[dict, ...] = field(default_factory=tuple)
    review_threshold: float | None = None
    retain_raw_input: bool = False
    raw_input_retention_days: int = 0
