"""Retention by partition on PostgreSQL: purging a month by dropping its partition versus deleting its rows.

``python bench/audit_partitions.py [--events 1000000] [--json]`` runs on a
throw-away PostgreSQL database (``BENCH_PARTITIONS_DB``, default
``maas_bench_partitions``; created, migrated and dropped here, never the live
one) and reports:

- ``partition_purge``: ``audit_month_purge`` of one expired month of
  ``--events`` events held in its own partition (the month is dropped whole;
  the few rows its last block reaches into the next month are deleted);
- ``row_purge``: ``audit_purge`` of the rest: a small month by partition and
  ``--events`` events of a third expired month whose rows sit in the DEFAULT
  partition (no partition of their own), i.e. the row-delete path every purge
  took before partitions, then VACUUM of that partition;
- ``pg_total_relation_size`` of the event table (all partitions) before and
  after each purge: a dropped partition returns its space at once, deleted
  rows leave dead tuples until VACUUM;
- ``insert_rows_per_s`` of the bulk load (COPY through the parent, with the
  uniqueness row trigger), ``seal_seconds`` and ``verify_seconds``.

Other scripts (``bench/scale.py``) call the same services:
``audit_partitions_ensure(first_month=..., months_ahead=...)``,
``audit_month_purge(month=...)`` / ``audit_purge()`` and
``audit_events_total_bytes()`` / ``audit_partitions_describe()``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # bench/policy.py must not shadow the policy package
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from audit.models import AuditEvent  # noqa: E402
from audit.services import (  # noqa: E402
    PurgeResult,
    audit_events_total_bytes,
    audit_month_purge,
    audit_partitions_describe,
    audit_partitions_ensure,
    audit_purge,
    audit_seal,
    audit_verify,
)

BATCH = 10_000


def log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def _month(day: date, add: int) -> date:
    index = day.year * 12 + day.month - 1 + add
    return date(index // 12, index % 12 + 1, 1)


def load(month: date, events: int) -> float:
    """COPY ``events`` request rows recorded (and occurred) evenly over ``month``, in time order; rows/s."""
    fields = [f for f in AuditEvent._meta.concrete_fields if f.name != "seq"]
    quote = connection.ops.quote_name
    copy_sql = f"COPY {quote(AuditEvent._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) FROM STDIN"
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    step = (datetime.combine(_month(month, 1), datetime.min.time(), UTC) - start) / max(events, 1)
    template = {
        "event_type": "request",
        "action": "v1.predict",
        "actor": "tenant:acme/key:mk_0001",
        "tenant_id": 1,
        "tenant_slug": "acme",
        "key_prefix": "mk_0001",
        "method": "POST",
        "path": "/v1/models/digits/predict",
        "http_status": 200,
        "latency_ms": 3.2,
        "model_name": "digits",
        "model_version": 3,
        "model_sha256": "ab" * 32,
        "decision": "allow",
        "rule_id": "baseline.allow",
        "policy_versions": "baseline@3",
        "units": 1,
        "prediction": {"labels": [3], "top_probabilities": [0.93]},
    }
    static = [f.get_db_prep_save(template.get(f.name, f.get_default()), connection) for f in fields]
    at = {f.name: i for i, f in enumerate(fields)}
    started = time.perf_counter()
    made = 0
    with connection.cursor() as cursor:
        while made < events:
            n = min(BATCH, events - made)
            with transaction.atomic(), cursor.cursor.copy(copy_sql) as copy:
                for j in range(made, made + n):
                    row = list(static)
                    when = start + step * j
                    row[at["event_id"]] = uuid.uuid4()
                    row[at["occurred_at"]] = when
                    row[at["recorded_at"]] = when
                    row[at["request_id"]] = f"req-{j}"
                    copy.write_row(row)
            made += n
    return events / (time.perf_counter() - started)


def timed(purge: Callable[[], PurgeResult]) -> dict:
    """Run one purge; its time, what it removed and the event table's size around it."""
    before = audit_events_total_bytes()
    started = time.perf_counter()
    result = purge()
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "events": result.events,
        "blocks": result.blocks,
        "tombstones": len(result.tombstones),
        "bytes_before": before,
        "bytes_after": audit_events_total_bytes(),
    }


def _size(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(%s)", [table])
        return int(cursor.fetchone()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in each purged month")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()
    quiet = args.json
    if connection.vendor != "postgresql":
        print("PostgreSQL only (set DATABASE_URL): SQLite keeps one table.", file=sys.stderr)
        return 2
    connection.settings_dict.setdefault("TEST", {})["NAME"] = os.environ.get(
        "BENCH_PARTITIONS_DB", "maas_bench_partitions"
    )
    settings.AUDIT_SEAL_LAG_SECONDS = 0
    checkpoints = tempfile.TemporaryDirectory(prefix="bench-checkpoints-")
    settings.AUDIT_CHECKPOINT_DIR = checkpoints.name
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    # Three months older than the default retention (365 days): the first gets its own
    # partition (and so does the second, which its last block reaches into); the third has
    # none, so its rows land in the DEFAULT partition and can only be deleted row by row.
    first = _month((timezone.now() - timedelta(days=500)).date(), 0)
    second, third = _month(first, 1), _month(first, 2)
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "events_per_month": args.events,
        "months": [str(first), str(second), str(third)],
    }
    try:
        audit_partitions_ensure(first_month=first, months_ahead=1)
        log(f"loading {args.events:,} events into each of {first:%Y-%m} and {third:%Y-%m} ...", quiet)
        results["insert_rows_per_s"] = round(load(first, args.events))
        load(second, 1_000)
        load(third, args.events)  # no partition for this month: the DEFAULT partition takes it
        log("sealing ...", quiet)
        started = time.perf_counter()
        results["sealed_events"] = audit_seal().events
        results["seal_seconds"] = round(time.perf_counter() - started, 1)
        results["partitions_before"] = {p.name: p.total_bytes for p in audit_partitions_describe()}
        log(f"purge of {first:%Y-%m} by partition ...", quiet)
        results["partition_purge"] = timed(lambda: audit_month_purge(month=first, actor="system:bench"))
        results["partitions_after"] = {p.name: p.total_bytes for p in audit_partitions_describe()}
        log(f"purge of the rest ({second:%Y-%m} by partition, {third:%Y-%m} by row deletes) ...", quiet)
        results["row_purge"] = timed(lambda: audit_purge(actor="system:bench"))
        default = next(p.name for p in audit_partitions_describe() if p.is_default)
        results["default_partition_bytes_after_row_purge"] = _size(default)
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM {default}")
        results["vacuum_seconds"] = round(time.perf_counter() - started, 2)
        results["default_partition_bytes_after_vacuum"] = _size(default)
        started = time.perf_counter()
        report = audit_verify()
        results["verify_seconds"] = round(time.perf_counter() - started, 1)
        results["verify_ok"] = report.ok
        results["purged_events_in_tombstones"] = report.purged_events
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        checkpoints.cleanup()
    if args.json:
        print(json.dumps(results))
    else:
        for key, value in results.items():
            print(f"{key:>40}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
