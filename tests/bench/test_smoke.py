"""The benchmark harness in its smoke mode, so that ``make bench`` cannot rot (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_bench_smoke_produces_table_json_and_chart(tmp_path):
    output = tmp_path / "latest"
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(output.with_suffix(".json").read_text())
    variants = {row["variant"] for row in report["table"]}
    assert {"B4 bare view", "A1 +auth", "A2 +quota", "A3 +policy", "G governed v1", "G2 governed v2"} <= variants
    assert "B5 minimal Django" in variants  # the minimal Django app (bench/minimal), on its own server
    assert "GT governed v1, tracing on" in variants  # the same path on a server exporting spans
    for row in report["table"]:
        assert row["rps"] > 0 and row["errors"] == 0, row
    assert report["baselines"] and "error" not in report["baselines"], report["baselines"]
    # B1/B2 come from the standalone bench/inference.py: single-threaded, the two runtimes agreeing.
    assert report["baselines"]["settings"]["tf_intra_op_threads"] == 1 and report["baselines"]["agreement"]["ok"]
    assert all("error" not in v for v in report["components"].values()), report["components"]
    assert output.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    profile = report["profiles"]["embedded"]
    assert "error" not in profile, profile
    assert {"bare", "governed", "governed, round trips stubbed"} <= set(profile["paths"])
    assert set(profile["in_request"]) == {"quota", "audit"}
    markdown = output.with_suffix(".md").read_text()
    assert "| backend | variant |" in markdown
    assert "## Targets (issue #8), from this run" in markdown
    assert "## Where the governed path's CPU goes" in markdown
    assert "| B4/B5 throughput, c=4 | embedded |" in markdown and "| G/B5 throughput, c=4 | embedded |" in markdown
