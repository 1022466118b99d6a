"""``bench/scale.py`` at a tiny N, so that ``make bench-scale`` cannot rot (no timing assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import pytest

from tests.support import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_bench_scale_reports_every_measure(tmp_path):
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        pytest.skip("bench-scale runs on PostgreSQL only")
    base, _, name = url.rpartition("/")
    scratch = f"{base}/{name}_scale_smoke"
    output = tmp_path / "scale"
    env = {**os.environ, "MAAS_VAR_DIR": str(tmp_path / "var")}
    try:
        result = subprocess.run(
            [sys.executable, "bench/scale.py", "--steps", "400,800", "--database-url", scratch, "--output", str(output)]
            + ["--live-rate", "200", "--live-seconds", "3", "--live-interval", "1"]
            + (["--redis-url", os.environ["REDIS_URL"]] if os.environ.get("REDIS_URL") else []),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        with psycopg.connect(base + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}_scale_smoke" WITH (FORCE)')
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    if os.environ.get("REDIS_URL"):
        # Its quota counters live under a namespace of their own: tenant ids of its scratch database must not
        # land on the counters of this worker's tenants, which have the same ids (a 429 in a later test).
        from core.redis import redis_client

        client = redis_client()
        own = client.keys("maas:bench-scale:q:*")
        assert own, "bench-scale wrote no quota counters under its own namespace"
        client.delete(*own)
    report = json.loads(output.with_suffix(".json").read_text())
    assert [r["events"] for r in report["results"]] == [400, 800]
    for row in report["results"]:
        assert row["seal_events_per_s"] > 0 and row["verify_full_s"] > 0
        assert row["verify_incremental_mode"] == "incremental" and row["verify_incremental_blocks"] == 1
        assert row["export_rows"] >= row["events"]  # plus the tenant's own set-up records
        assert row["usage_p50_ms"] > 0 and row["admin_tenant_p95_ms"] >= row["admin_tenant_p50_ms"] > 0
        assert row["db_mib_per_million"] > 0 and row["purge_month_s"] >= 0
        # Requests recorded by the writer processes while the passes sealed (a few hundred in 3 s).
        assert row["live_recorded_per_s"] > 0 and row["live_seal_passes"] >= 1 and row["live_sealed_per_s"] > 0
    markdown = output.with_suffix(".md").read_text()
    assert "| metric | N = 400 | N = 800 |" in markdown and "GET /v1/usage p95 (ms)" in markdown
