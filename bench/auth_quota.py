#!/usr/bin/env python
"""Per-request cost of authentication, quota and policy, in microseconds of CPU and of wall time.

Measures, in one process and without HTTP, exactly the calls the request
pipeline makes before inference: ``api_key_authenticate`` (cache hit: one HMAC
and a few comparisons), ``policy_decide`` (the compiled policy state of the
database, seeded by ``bootstrap``) and ``quota_reserve`` against a plan whose
rate, daily and monthly limits are all active (so every check runs, none
refuses).  CPU time (``time.process_time``) is the issue's budget of 150 µs
for the three together; wall time adds the wait for Redis:

* embedded: the database backend on a private SQLite file (WAL), the
  installation's default without ``REDIS_URL``;
* redis: the Lua script, one ``EVALSHA`` round trip, when ``REDIS_URL`` (or
  ``--redis-url``) names a Redis; its keys live under a private namespace and
  are deleted afterwards.  A bare ``PING`` on the same client is measured too,
  to show how much of the figure is the round trip itself.

Each figure is the median over ``--runs`` runs of the mean over
``--iterations`` calls, after a warm-up.  ``--json`` prints one JSON object as
the last line (``bench/run.py`` collects it).  Nothing outside a temporary
directory and that Redis namespace is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setup_django(workdir: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
    os.environ.pop("DATABASE_URL", None)  # the embedded backend is SQLite
    os.environ["MAAS_SQLITE_PATH"] = str(workdir / "bench.sqlite3")
    os.environ.setdefault("MAAS_VAR_DIR", str(workdir))
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _per_call(fn: Callable[[], object], iterations: int, runs: int) -> tuple[float, float]:
    """Median over runs of the mean (wall, CPU) time per call, in µs."""
    for _ in range(min(500, iterations)):
        fn()
    walls, cpus = [], []
    for _ in range(runs):
        started, cpu = time.perf_counter_ns(), time.process_time_ns()
        for _ in range(iterations):
            fn()
        cpus.append((time.process_time_ns() - cpu) / iterations / 1000.0)
        walls.append((time.perf_counter_ns() - started) / iterations / 1000.0)
    return round(statistics.median(walls), 2), round(statistics.median(cpus), 2)


def _scenarios(fns: dict[str, Callable[[], object]], iterations: int, runs: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, fn in fns.items():
        wall, cpu = _per_call(fn, iterations, runs)
        out[f"{name}_us"] = wall
        out[f"{name}_cpu_us"] = cpu
    return out


def measure(*, iterations: int, runs: int, redis_url: str | None) -> dict:
    """Run every scenario and return the figures (µs per request)."""
    from django.conf import settings

    from core.redis import redis_client, redis_reset
    from policy.evaluator import ModelFacts
    from policy.services import policy_decide
    from tenants.models import Plan
    from tenants.services import api_key_authenticate, api_key_create, quota_reserve, tenant_create

    big = 10**12
    plan = Plan.objects.create(
        name=f"bench-{os.getpid()}", rate_per_second=1e9, burst=10**9, daily_instances=big, monthly_instances=big * 30
    )
    tenant = tenant_create(slug=f"bench-{os.getpid()}", actor="bench", plan=plan)
    raw_key = api_key_create(tenant=tenant, actor="bench").raw_key
    principal = api_key_authenticate(raw_key=raw_key)

    def auth() -> object:
        return api_key_authenticate(raw_key=raw_key)

    def quota() -> object:
        return quota_reserve(principal=principal, units=1)

    def both() -> object:
        return quota_reserve(principal=api_key_authenticate(raw_key=raw_key), units=1)

    model = ModelFacts(name="digits", version=1, risk_tier="limited", region="eu")

    def policy() -> object:
        return policy_decide(principal=principal, model=model, purpose="research")

    def governance() -> object:
        who = api_key_authenticate(raw_key=raw_key)
        policy_decide(principal=who, model=model, purpose="research")
        return quota_reserve(principal=who, units=1)

    fns = {"auth": auth, "quota": quota, "auth_quota": both, "policy": policy, "auth_quota_policy": governance}
    results: dict[str, dict] = {}
    settings.REDIS_URL = ""
    redis_reset()
    results["embedded"] = _scenarios(fns, iterations, runs)
    if not redis_url:
        results["redis"] = {"skipped": "REDIS_URL not set"}
        return results
    settings.REDIS_URL = redis_url
    settings.QUOTA_REDIS_PREFIX = namespace = f"maas:bench:{os.getpid()}"
    redis_reset()
    try:
        redis_client().ping()
    except Exception as exc:
        results["redis"] = {"skipped": f"Redis unreachable: {type(exc).__name__}"}
        return results
    try:
        results["redis"] = _scenarios(fns, iterations, runs)
        # One bare round trip, for scale: the script costs about that plus a little.
        ping_wall, ping_cpu = _per_call(redis_client().ping, iterations, runs)
        results["redis"].update(redis_ping_us=ping_wall, redis_ping_cpu_us=ping_cpu)
    finally:
        client = redis_client()
        for key in client.scan_iter(match=f"{namespace}:*", count=1000):
            client.delete(key)
    return results


def render(results: dict, iterations: int, runs: int) -> str:
    """A plain-text table of the figures."""
    names = ("auth", "policy", "quota", "auth_quota_policy")
    lines = [
        f"auth (cache hit), policy, quota per request, µs CPU / wall (median of {runs} runs x {iterations} calls)",
        f"{'backend':<10} " + " ".join(f"{n.replace('_', '+'):>18}" for n in names),
    ]
    for backend, row in results.items():
        if "skipped" in row:
            lines.append(f"{backend:<10} skipped: {row['skipped']}")
            continue
        cells = [f"{row[f'{n}_cpu_us']:8.1f} / {row[f'{n}_us']:7.1f}" for n in names]
        line = f"{backend:<10} " + " ".join(f"{c:>18}" for c in cells)
        if "redis_ping_us" in row:
            line += f"   (a bare Redis PING: {row['redis_ping_cpu_us']:.1f} / {row['redis_ping_us']:.1f})"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000, help="Calls per run (default 2000).")
    parser.add_argument("--runs", type=int, default=5, help="Runs per figure; the median is reported (default 5).")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", ""), help="Redis to measure (default $REDIS_URL)."
    )
    parser.add_argument("--json", action="store_true", help="Print the figures as one JSON line at the end.")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="maas-bench-auth-quota-"))
    try:
        _setup_django(workdir)
        results = measure(iterations=args.iterations, runs=args.runs, redis_url=args.redis_url or None)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(render(results, args.iterations, args.runs))
    if args.json:
        print(json.dumps({"unit": "us_per_request", "iterations": args.iterations, "runs": args.runs, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
