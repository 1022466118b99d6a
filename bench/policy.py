"""Microseconds per policy decision, with a realistic policy set.

``python bench/policy.py [--runs 7] [--decisions 20000] [--json]`` compiles the
baseline policy (as installed by the migration) plus a few hundred tenant and
model policies and kill switches, then times ``policy.evaluator.decide`` over
a mix of callers, models and purposes.  It prints the median over the runs
(and every run).  Needs no database: this is exactly the work a request does
once the per-process state is compiled; the Django wrapper adds one cached
generation check (a dict lookup between the once-a-second reads).
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's directory comes first on sys.path and its own
# name would shadow the ``policy`` package: put the repository root there.
sys.path[0] = str(ROOT)

from policy.evaluator import ModelFacts, PolicySpec, compile_policy_set, decide  # noqa: E402
from tenants.principal import Principal  # noqa: E402

REGIONS = ("eu", "cn", "us")
TIERS = ("minimal", "limited", "high")
PURPOSES = ("research", "medical", "fraud-detection", "marketing")


def baseline_rules() -> list[dict]:
    """The rules the data migration installs (the fresh-install policy)."""
    migration = importlib.import_module("policy.migrations.0002_baseline_policy")
    return migration.BASELINE_RULES


def build_workload(tenants: int, models: int, seed: int = 7):
    """Specs, kill switches, callers and models of a mid-sized deployment."""
    rng = random.Random(seed)
    model_facts = [
        ModelFacts(name=f"model-{i}", version=1, risk_tier=TIERS[i % 3], region=REGIONS[i % 3]) for i in range(models)
    ]
    specs = [PolicySpec(name="baseline", scope="global", target="", version=3, rules=baseline_rules())]
    for t in range(tenants):
        allowed = sorted(rng.sample([m.name for m in model_facts], k=max(1, models // 2)))
        rules = [
            {"id": "allow", "type": "model_access", "mode": "enforce", "params": {"models": allowed}},
            {"id": "purpose", "type": "purpose_limitation", "mode": "monitor", "params": {"min_risk_tier": "limited"}},
            {"id": "tier", "type": "model_access", "mode": "enforce", "params": {"max_risk_tier": "high"}},
        ]
        if t % 4 == 0:
            rules.append(
                {
                    "id": "keep",
                    "type": "data_minimisation",
                    "mode": "enforce",
                    "params": {"retain_raw_input": True, "retention_days": 30},
                }
            )
        specs.append(PolicySpec(name=f"tenant:t{t}", scope="tenant", target=f"t{t}", version=1 + t % 5, rules=rules))
    for m in model_facts[::3]:
        rules = [
            {"id": "residency", "type": "data_residency", "mode": "enforce", "params": {"regions": ["eu", "us"]}},
            {"id": "oversight", "type": "human_oversight", "mode": "enforce", "params": {"threshold": 0.75}},
        ]
        specs.append(PolicySpec(name=f"model:{m.name}", scope="model", target=m.name, version=2, rules=rules))
    switches = [("key", f"key{n:05d}") for n in range(0, 2000, 40)] + [("tenant", f"t{tenants + 1}")]
    principals = [
        Principal(
            tenant_id=t,
            tenant_slug=f"t{t % tenants}",
            region=REGIONS[t % 3],
            identity_verified=t % 2 == 0,
            approved_purposes=PURPOSES[: 1 + t % 3],
            key_id=t,
            key_prefix=f"key{t:05d}",
            scopes=frozenset({"predict"}),
        )
        for t in range(64)
    ]
    calls = [(rng.choice(principals), rng.choice(model_facts), rng.choice((None, *PURPOSES))) for _ in range(1024)]
    return specs, switches, calls


def run(decisions: int, runs: int, tenants: int, models: int) -> dict:
    """Compile once, then time ``decisions`` decisions per run; return the figures."""
    specs, switches, calls = build_workload(tenants, models)
    started = time.perf_counter()
    policy_set = compile_policy_set(specs, switches)
    compile_ms = (time.perf_counter() - started) * 1000
    now = time.time()
    for principal, model, purpose in calls:  # warm-up
        decide(policy_set, principal, model, purpose, "predict", now)
    per_run = []
    allowed = 0
    n_calls = len(calls)
    for _ in range(runs):
        started = time.perf_counter()
        for i in range(decisions):
            principal, model, purpose = calls[i % n_calls]
            allowed += decide(policy_set, principal, model, purpose, "predict", now).allowed
        per_run.append((time.perf_counter() - started) / decisions * 1e6)
    rules = sum(len(s.rules) for s in specs)
    return {
        "benchmark": "policy.evaluator.decide",
        "policies": len(specs),
        "rules": rules,
        "kill_switches": len(switches),
        "distinct_calls": n_calls,
        "decisions_per_run": decisions,
        "runs": runs,
        "us_per_decision_median": round(statistics.median(per_run), 2),
        "us_per_decision_runs": [round(v, 2) for v in per_run],
        "allowed_fraction": round(allowed / (decisions * runs), 3),
        "compile_ms": round(compile_ms, 2),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    args = parser.parse_args(argv)
    result = run(args.decisions, args.runs, args.tenants, args.models)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['us_per_decision_median']} µs per decision (median of {args.runs} runs of "
            f"{args.decisions}; {result['policies']} policies, {result['rules']} rules, "
            f"{result['kill_switches']} kill switches; compiled in {result['compile_ms']} ms)"
        )
        print("runs (µs):", ", ".join(str(v) for v in result["us_per_decision_runs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
