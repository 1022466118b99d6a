"""Exactness under real concurrency: several OS processes x threads against one daily quota.

208 reservations race for a daily quota of 50 instances, from four separate
processes with four threads each (a fifth process serves tenant B).  Exactly
50 are admitted, every other answer is ``quota_exceeded`` with Retry-After,
the durable usage equals 50, and tenant B, with its own quota, gets all of its
requests through.  Runs on the database backend (SQLite or PostgreSQL) and on
Redis.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tenants.selectors import quota_usage_current, usage_summary, usage_units_since
from tenants.services import api_key_authenticate
from tests.fixtures.factories import PlanFactory, TenantFactory
from tests.fixtures.tenants import issue_key
from tests.support import ROOT, server_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PROCESSES = 4
THREADS = 4
CALLS = 13  # 4 x 4 x 13 = 208 reservations
QUOTA = 50
B_CALLS = 10  # tenant B: 1 process x 3 threads x 10


def _spawn(raw_key: str, calls: int, threads: int, go_file: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.tenants.quota_worker", raw_key, str(calls), str(threads), str(go_file)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_exactly_the_quota_is_admitted_across_processes(quota_backend, tmp_path, settings):
    tenant_a = TenantFactory(plan=PlanFactory(daily_instances=QUOTA))
    tenant_b = TenantFactory(plan=PlanFactory(daily_instances=1000))
    key_a, key_b = issue_key(tenant_a), issue_key(tenant_b)
    env = server_env(REDIS_URL=settings.REDIS_URL)
    go_file = tmp_path / "go"
    procs = [_spawn(key_a.raw_key, CALLS, THREADS, go_file, env) for _ in range(PROCESSES)]
    procs.append(_spawn(key_b.raw_key, B_CALLS, 3, go_file, env))
    _wait_until_ready(procs, go_file)
    go_file.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    a_results, b_result = results[:PROCESSES], results[PROCESSES]

    admitted = sum(r["admitted_units"] for r in a_results)
    refused = sum(r["outcome"].get("quota_exceeded", 0) for r in a_results)
    other = {
        code: n for r in a_results for code, n in r["outcome"].items() if code not in ("admitted", "quota_exceeded")
    }
    assert admitted == QUOTA
    assert refused == PROCESSES * THREADS * CALLS - QUOTA
    assert other == {}
    assert all(set(r["limits"]) <= {"daily"} for r in a_results)
    assert sum(r["retry_after_missing"] for r in a_results) == 0

    assert usage_units_since(tenant_id=tenant_a.pk, since=_today()) == QUOTA
    principal_a = api_key_authenticate(raw_key=key_a.raw_key)
    daily = next(u for u in quota_usage_current(scopes=principal_a.effective_quota_scopes()) if u.period == "daily")
    assert daily.used == QUOTA and daily.remaining == 0
    assert usage_summary(tenant=tenant_a, since=_today(), until=_tomorrow()).instances == QUOTA

    assert b_result["admitted_units"] == 3 * B_CALLS
    assert b_result["outcome"] == {"admitted": 3 * B_CALLS}


def _wait_until_ready(procs: list[subprocess.Popen], go_file: Path) -> None:
    """Start the race only when every process has Django loaded and its key authenticated."""
    deadline = time.monotonic() + 120
    while len(list(go_file.parent.glob(go_file.name + ".ready-*"))) < len(procs):
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited early: {proc.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.05)


def _today():
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


def _tomorrow():
    from datetime import timedelta

    return _today() + timedelta(days=1)
