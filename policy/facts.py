"""Decision facts: what a governed answer tells the tenant about how it was decided.

Django-free.  Every governed response carries, next to ``request_id``, the
policy versions that decided it and the obligations applied to it, so a tenant
can quote them (and later prove them with an audit receipt, whose event holds
the same ``policy_versions``, ``needs_review`` and raw-input retention).

Headers::

    X-Policy-Versions: global-baseline@3,tenant-acme@7
    X-Obligations: human_review;threshold=0.8, data_minimisation;raw_input=discarded

``X-Policy-Versions`` is ``none`` when no stored policy applied (built-in rules
only).  Data minimisation is always stated: either the raw input is discarded
(the default) or retained for a number of days because a policy requires it.
"""

from __future__ import annotations

from typing import Any

from policy.evaluator import Decision

POLICY_VERSIONS_HEADER = "X-Policy-Versions"
OBLIGATIONS_HEADER = "X-Obligations"


def decision_facts(decision: Decision) -> dict[str, Any]:
    """The body form: ``{"policy_versions": [...], "obligations": [...]}``."""
    obligations: list[dict[str, Any]] = []
    if decision.review_threshold is not None:
        obligations.append({"type": "human_review", "threshold": decision.review_threshold})
    if decision.retain_raw_input:
        obligations.append(
            {"type": "data_minimisation", "raw_input": "retained", "retention_days": decision.raw_input_retention_days}
        )
    else:
        obligations.append({"type": "data_minimisation", "raw_input": "discarded"})
    versions = [label for label in decision.policy_versions.split(",") if label]
    return {"policy_versions": versions, "obligations": obligations}


def decision_headers(decision: Decision) -> dict[str, str]:
    """The header form of :func:`decision_facts` (ASCII, comma-separated lists)."""
    facts = decision_facts(decision)
    obligations = []
    for obligation in facts["obligations"]:
        params = [f"{name}={value}" for name, value in obligation.items() if name != "type"]
        obligations.append(";".join([obligation["type"], *params]))
    return {
        POLICY_VERSIONS_HEADER: ",".join(facts["policy_versions"]) or "none",
        OBLIGATIONS_HEADER: ", ".join(obligations),
    }
