"""``GET /v1/usage`` latency over a long history: the audit-event scan against rollups plus the tail.

``python bench/usage.py [--events 200000] [--requests 15] [--json]`` runs on a
throw-away database of the configured kind (``<DATABASE_URL's name>_usage_bench``
on PostgreSQL, a file under ``MAAS_VAR_DIR`` on SQLite; created, migrated and
dropped here, never the live one) and reports:

- ``scan_ms``: median (and p95) of ``GET /v1/usage`` answered the old way,
  by the full scans ``usage_summary_from_events`` and
  ``usage_units_since_from_events`` (the code the rollups replaced, kept as
  the reference);
- ``advance_s``: ``usage_rollups_advance`` folding every event in;
- ``rollup_ms``: the same requests answered from the rollups plus the tail
  (``--tail`` events written after the advance);
- ``same_answer``: whether the rollup selectors equal the scans afterwards
  (the 30-day summary and the month's units).

The events are bulk-inserted (COPY on PostgreSQL) for one tenant, spread over
the last 30 days, over three keys, two model versions and a mix of statuses.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from audit.models import AuditEvent  # noqa: E402
from tenants import selectors  # noqa: E402
from tenants.services import api_key_create, tenant_create  # noqa: E402
from tenants.services.usage_rollups import usage_rollups_advance  # noqa: E402

BATCH = 20_000
OUTCOMES = ((200, ""), (200, ""), (200, ""), (200, ""), (429, "quota_exceeded"), (403, "policy_denied"), (503, ""))


def bulk_insert(*, tenant, prefixes: list[str], events: int, days: int = 30) -> float:
    """Insert ``events`` request records of ``tenant`` over the last ``days`` days; returns seconds."""
    fields = [f for f in AuditEvent._meta.concrete_fields if f.name not in ("seq", "recorded_at")]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    table = quote(AuditEvent._meta.db_table)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"
    copy_sql = f"COPY {table} ({columns}) FROM STDIN"
    start = timezone.now() - timedelta(days=days)
    step = timedelta(days=days) / events
    started = time.perf_counter()
    made = 0
    with connection.cursor() as cursor:
        while made < events:
            batch = []
            for j in range(made, min(events, made + BATCH)):
                status, code = OUTCOMES[j % len(OUTCOMES)]
                values = {
                    "event_type": "request",
                    "event_id": uuid.uuid4(),
                    "occurred_at": start + step * j,
                    "action": "models.predict",
                    "tenant_id": tenant.pk,
                    "tenant_slug": tenant.slug,
                    "key_prefix": prefixes[j % len(prefixes)],
                    "model_name": "digits",
                    "model_version": 1 + j % 2,
                    "http_status": status,
                    "error_code": code,
                    "units": 1 if status == 200 else 0,
                    "latency_ms": 1.0 + (j % 40) / 8,
                }
                batch.append([f.get_db_prep_save(values.get(f.name, f.get_default()), connection) for f in fields])
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    with cursor.cursor.copy(copy_sql) as copy:
                        for row in batch:
                            copy.write_row(row)
                else:
                    cursor.executemany(sql, batch)
            made += len(batch)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {table}")
    return time.perf_counter() - started


def timed_usage(client: Client, raw_key: str, n: int) -> tuple[list[float], bytes]:
    """``n`` timed ``GET /v1/usage`` calls (after one untimed warm-up); returns milliseconds and the last body."""
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}
    response = client.get("/v1/usage", **headers)
    assert response.status_code == 200, response.content[:500]
    out = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get("/v1/usage", **headers)
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return out, response.content


def _stats(ms: list[float]) -> dict:
    ordered = sorted(ms)
    return {"median": round(statistics.median(ordered), 1), "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 1)}


def _print_queries(client: Client, raw_key: str) -> None:
    """One ``GET /v1/usage`` with every SQL statement's time (where a read's time goes)."""
    timings: list[tuple[float, str]] = []

    def wrapper(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timings.append(((time.perf_counter() - started) * 1000, sql))

    with connection.execute_wrapper(wrapper):
        client.get("/v1/usage", HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    for ms, sql in timings:
        print(f"{ms:8.1f} ms  {sql[:300]}")
    print(f"{sum(ms for ms, _ in timings):8.1f} ms  in {len(timings)} statements")
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    client.get("/v1/usage", HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    profile.disable()
    pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="audit events of the one tenant")
    parser.add_argument("--tail", type=int, default=200, help="events written after the rollups advanced")
    parser.add_argument("--requests", type=int, default=15, help="timed GET /v1/usage calls per variant")
    parser.add_argument("--queries", action="store_true", help="print each query of one rollup-read call, timed")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()

    test_settings = connection.settings_dict.setdefault("TEST", {})
    if connection.vendor == "sqlite":
        test_settings["NAME"] = str(Path(settings.VAR_DIR) / "bench-usage.sqlite3")
    else:
        test_settings["NAME"] = f"{connection.settings_dict['NAME']}_usage_bench"
    settings.AUDIT_SEAL_LAG_SECONDS = 0
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    results: dict = {"backend": connection.vendor, "events": args.events, "tail": args.tail}
    try:
        tenant = tenant_create(slug="bench-usage", actor="bench")
        issued = api_key_create(tenant=tenant, actor="bench")
        prefixes = [issued.key.prefix, "maas_benchb", "maas_benchc"]
        results["insert_s"] = round(bulk_insert(tenant=tenant, prefixes=prefixes, events=args.events), 1)
        client = Client()

        fast_summary, fast_units = selectors.usage_summary, selectors.usage_units_since
        selectors.usage_summary = selectors.usage_summary_from_events
        selectors.usage_units_since = selectors.usage_units_since_from_events
        try:
            scan_ms, _ = timed_usage(client, issued.raw_key, args.requests)
        finally:
            selectors.usage_summary, selectors.usage_units_since = fast_summary, fast_units
        results["scan_ms"] = _stats(scan_ms)

        started = time.perf_counter()
        advance = usage_rollups_advance()
        results["advance_s"] = round(time.perf_counter() - started, 2)
        results["advance_batches"] = advance.batches
        bulk_insert(tenant=tenant, prefixes=prefixes, events=args.tail, days=1)  # the tail past the watermark
        rollup_ms, _ = timed_usage(client, issued.raw_key, args.requests)
        results["rollup_ms"] = _stats(rollup_ms)
        if args.queries:
            _print_queries(client, issued.raw_key)

        # Same answer: the request path audits each call, so compare the selectors over the same events.
        now = timezone.now()
        since = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=29)
        until = since + timedelta(days=30)
        month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        results["same_answer"] = selectors.usage_summary(
            tenant=tenant, since=since, until=until
        ) == selectors.usage_summary_from_events(tenant=tenant, since=since, until=until) and (
            selectors.usage_units_since(tenant_id=tenant.pk, since=month)
            == selectors.usage_units_since_from_events(tenant_id=tenant.pk, since=month)
        )
    finally:
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)
    if args.json:
        print(json.dumps(results))
    else:
        for key, value in results.items():
            print(f"{key:>16}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
