"""bench/policy.py keeps working: it compiles a realistic set and reports figures (no timing asserted)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.embedded


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_policy", ROOT / "bench" / "policy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_reports_median_of_runs():
    result = load_bench().run(decisions=300, runs=3, tenants=10, models=6)
    assert result["runs"] == 3 and len(result["us_per_decision_runs"]) == 3
    assert result["us_per_decision_median"] > 0
    assert result["policies"] == 1 + 10 + 2
    assert 0 < result["allowed_fraction"] < 1


def test_bench_script_prints_json():
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "policy.py"), "--json", "--runs", "2", "--decisions", "200"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    figures = json.loads(completed.stdout)
    assert figures["benchmark"] == "policy.evaluator.decide"
    assert figures["kill_switches"] > 0 and figures["rules"] > figures["policies"]
