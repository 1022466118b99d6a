#!/usr/bin/env python
"""Per-request cost of authentication (key-cache hit) plus quota enforcement, in microseconds.

Measures, in one process and without HTTP, exactly the two calls the request
pipeline makes first: ``api_key_authenticate`` (cache hit: one HMAC and a few
comparisons) and ``quota_reserve`` against a plan whose rate, daily and
monthly limits are all active (so every check runs, none refuses):

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


def _per_call_us(fn: Callable[[], object], iterations: int, runs: int) -> float:
    for _ in range(min(500, iterations)):
        fn()
    means = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        for _ in range(iterations):
            fn()
        means.append((time.perf_counter_ns() - started) / iterations / 1000.0)
    return round(statistics.median(means), 2)


def measure(*, iterations: int, runs: int, redis_url: str | None) -> dict:
    """Run every scenario and return the figures (µs per request)."""
    from django.conf import settings

    from gateway.redis import redis_client, redis_reset
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

    results: dict[str, dict] = {}
    settings.REDIS_URL = ""
    redis_reset()
    results["embedded"] = {
        "auth_us": _per_call_us(auth, iterations, runs),
        "quota_us": _per_call_us(quota, iterations, runs),
        "auth_quota_us": _per_call_us(both, iterations, runs),
    }
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
        results["redis"] = {
            "auth_us": _per_call_us(auth, iterations, runs),
            "quota_us": _per_call_us(quota, iterations, runs),
            "auth_quota_us": _per_call_us(both, iterations, runs),
            # One bare round trip on the same client, for scale: the script costs about that plus a little.
            "redis_ping_us": _per_call_us(redis_client().ping, iterations, runs),
        }
    finally:
        client = redis_client()
        for key in client.scan_iter(match=f"{namespace}:*", count=1000):
            client.delete(key)
    return results


def render(results: dict, iterations: int, runs: int) -> str:
    """A plain-text table of the figures."""
    lines = [
        f"auth (cache hit) + quota per request, µs (median of {runs} runs x {iterations} calls)",
        f"{'backend':<10} {'auth':>10} {'quota':>10} {'auth+quota':>12}",
    ]
    for backend, row in results.items():
        if "skipped" in row:
            lines.append(f"{backend:<10} skipped: {row['skipped']}")
            continue
        line = f"{backend:<10} {row['auth_us']:>10.2f} {row['quota_us']:>10.2f} {row['auth_quota_us']:>12.2f}"
        if "redis_ping_us" in row:
            line += f"   (a bare Redis PING: {row['redis_ping_us']:.2f})"
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
