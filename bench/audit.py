"""Audit-trail costs: the per-request write, sealing, export and its memory, verification.

``python bench/audit.py [--events 1000000] [--records 3000] [--json]`` runs on a
throw-away database of the configured kind (SQLite under ``MAAS_VAR_DIR`` by
default, PostgreSQL when ``DATABASE_URL`` is set; it is created, migrated and
dropped here, never the live one) and reports:

- ``record_us``: median (and p95) microseconds of ``audit_request_record``,
  the one INSERT every request pays before its response, in autocommit as the
  pipeline calls it (``record_cpu_us``: the mean CPU time of the caller);
- ``seal_events_per_s``: sealing throughput (canonical form, RFC 6962 leaf
  hashes, Merkle root, Ed25519 signature, one block row per 10,000 events);
- ``export_rows_per_s`` and the memory of a CSV export of all ``--events``
  events: resident set size sampled after every page, its peak and its growth
  over the export (with ``--trace-heap`` also the Python heap's peak from
  ``tracemalloc`` on a second, untimed pass);
- with ``--verify``, ``verify_events_per_s``: ``verify_audit`` re-reading and
  re-hashing everything.

The events are bulk-inserted (not through the request path) so that a million
of them take seconds; their content mimics real request records.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's directory comes first on sys.path and bench/policy.py
# would shadow the ``policy`` package: put the repository root there instead.
sys.path[0] = str(ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from audit.models import AuditEvent  # noqa: E402
from audit.selectors import ExportFilters  # noqa: E402
from audit.services import (  # noqa: E402
    audit_export_write,
    audit_input_digest,
    audit_request_record,
    audit_seal,
    audit_verify,
)
from bench._common import request_audit_fields  # noqa: E402

BATCH = 5000
TENANTS = ("acme", "globex", "initech", "umbrella", "hooli")


def log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def request_fields(i: int) -> dict:
    """Fields of a realistic governed request (the pipeline's key set; every 17th one denied)."""
    tenant = TENANTS[i % len(TENANTS)]
    key_prefix = f"mk_{i % 50:04d}"
    return request_audit_fields(
        request_id=uuid.uuid4().hex,
        input_digest=audit_input_digest(payload=str(i).encode()),
        actor=f"tenant:{tenant}/key:{key_prefix}",
        tenant_id=i % len(TENANTS) + 1,
        tenant_slug=tenant,
        key_prefix=key_prefix,
        client_ip=f"10.0.{i % 256}.{(i * 7) % 256}",
        latency_ms=2.5 + (i % 100) / 10,
        model_version=3,
        policy_versions=f"baseline@3,tenant:{tenant}@2",
        label=i % 10,
        top_probability=0.93,
        deny=("baseline/tier-high", "purpose_required") if i % 17 == 0 else None,
    )


def bench_record(records: int) -> dict:
    """Per-call cost of the request path's audit INSERT (autocommit, one statement)."""
    for i in range(min(200, records)):  # warm connection, statement cache, key file
        audit_request_record(**request_fields(i))
    timings = []
    cpu = 0
    for i in range(records):
        fields = request_fields(i)
        cpu_started, started = time.process_time_ns(), time.perf_counter_ns()
        audit_request_record(**fields)
        timings.append((time.perf_counter_ns() - started) / 1000)
        cpu += time.process_time_ns() - cpu_started
    timings.sort()
    return {
        "record_us": round(statistics.median(timings), 1),
        "record_p95_us": round(timings[int(len(timings) * 0.95)], 1),
        "record_cpu_us": round(cpu / records / 1000, 1),
        "record_calls": records,
    }


def bulk_insert(events: int, quiet: bool) -> dict:
    """Insert ``events`` request records in batched raw INSERTs, oldest first.

    The ORM's ``bulk_create`` costs ~100 µs of Python per row here; values are
    adapted once per template with the fields' own ``get_db_prep_save``, so the
    rows are exactly what the ORM would have written (``recorded_at`` is left
    to the database default, as on the request path).
    """
    fields = [f for f in AuditEvent._meta.concrete_fields if f.name not in ("seq", "recorded_at")]
    names = [f.name for f in fields]
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(AuditEvent._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    copy_sql = f"COPY {quote(AuditEvent._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) FROM STDIN"
    by_name = {f.name: f for f in fields}
    templates = []
    for i in range(997):
        values = {"event_type": "request", "occurred_at": None, "event_id": None, **request_fields(i)}
        templates.append([f.get_db_prep_save(values.get(f.name, f.get_default()), connection) for f in fields])
    id_at, time_at = names.index("event_id"), names.index("occurred_at")
    prep_id, prep_time = by_name["event_id"].get_db_prep_save, by_name["occurred_at"].get_db_prep_save
    start = timezone.now() - timedelta(days=30)
    started = time.perf_counter()
    made = 0
    with connection.cursor() as cursor:
        while made < events:
            n = min(BATCH, events - made)
            batch = []
            for j in range(made, made + n):
                if j % 50 == 0:  # 50 events per 100 ms; adapting a datetime per row costs more than the INSERT
                    when = prep_time(start + timedelta(milliseconds=2 * j), connection)
                row = list(templates[j % len(templates)])
                row[id_at] = prep_id(uuid.uuid4(), connection)
                row[time_at] = when
                batch.append(row)
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    # COPY: executemany costs a round trip's worth of server work per row.
                    with cursor.cursor.copy(copy_sql) as copy:
                        for row in batch:
                            copy.write_row(row)
                else:
                    cursor.executemany(sql, batch)
            made += n
            if made % 200_000 == 0:
                log(f"  inserted {made:,}", quiet)
    seconds = time.perf_counter() - started
    return {"insert_seconds": round(seconds, 1), "insert_rows_per_s": round(events / seconds)}


def bench_seal(total: int) -> dict:
    started = time.perf_counter()
    result = audit_seal()
    seconds = time.perf_counter() - started
    return {
        "seal_seconds": round(seconds, 2),
        "seal_events_per_s": round(result.events / seconds),
        "sealed_events": result.events,
        "sealed_blocks": len(result.blocks),
        "expected_events": total,
    }


def _rss_mib() -> float:
    """Current resident set size (Linux ``/proc``; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_export(path: Path, trace_heap: bool) -> dict:
    """One timed CSV export of everything, sampling RSS after every page (2,000 rows)."""
    rss_start = _rss_mib()
    samples = [rss_start]
    started = time.perf_counter()
    with path.open("wb") as fh:
        manifest = audit_export_write(
            filters=ExportFilters(),
            format="csv",
            stream=fh,
            actor="bench",
            source="bench",
            file_name=path.name,
            on_progress=lambda rows: samples.append(_rss_mib()),
        )
    seconds = time.perf_counter() - started
    rows = manifest["row_count"]
    out = {
        "export_rows": rows,
        "export_seconds": round(seconds, 2),
        "export_rows_per_s": round(rows / seconds),
        "export_file_mib": round(path.stat().st_size / 2**20, 1),
        "export_rss_start_mib": round(rss_start, 1),
        "export_rss_peak_mib": round(max(samples), 1),
        "export_rss_growth_mib": round(max(samples) - rss_start, 1),
    }
    if trace_heap:
        # Python heap high-water mark over a second, untimed pass (tracing slows it).
        tracemalloc.start()
        with path.open("wb") as fh:
            audit_export_write(filters=ExportFilters(), format="csv", stream=fh, actor="bench", source="bench")
        out["export_peak_heap_mib"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
    return out


def bench_verify() -> dict:
    started = time.perf_counter()
    report = audit_verify()
    seconds = time.perf_counter() - started
    return {
        "verify_ok": report.ok,
        "verify_seconds": round(seconds, 2),
        "verify_events_per_s": round(report.events_verified / seconds),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to seal and export")
    parser.add_argument("--records", type=int, default=3000, help="timed audit_request_record calls")
    parser.add_argument("--verify", action="store_true", help="also time a full verify_audit pass")
    parser.add_argument("--trace-heap", action="store_true", help="add an untimed tracemalloc export pass")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()
    quiet = args.json

    # A throw-away database of the configured kind: never the live trail.
    test_settings = connection.settings_dict.setdefault("TEST", {})
    if connection.vendor == "sqlite":
        test_settings["NAME"] = str(Path(settings.VAR_DIR) / "bench-audit.sqlite3")
    else:
        test_settings["NAME"] = "maas_bench_audit"
    settings.AUDIT_SEAL_LAG_SECONDS = 0
    # Its checkpoints go to a throw-away log too: the live one belongs to the live trail.
    checkpoints = tempfile.TemporaryDirectory(prefix="bench-checkpoints-")
    settings.AUDIT_CHECKPOINT_DIR = checkpoints.name
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    results: dict = {
        "backend": connection.vendor,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "events": args.events,
    }
    try:
        log(f"audit_request_record x {args.records} ...", quiet)
        results.update(bench_record(args.records))
        log(f"bulk insert of {args.events:,} events ...", quiet)
        results.update(bulk_insert(args.events, quiet))
        total = AuditEvent.objects.count()
        log("sealing ...", quiet)
        results.update(bench_seal(total))
        with tempfile.TemporaryDirectory() as tmp:
            log("export ...", quiet)
            results.update(bench_export(Path(tmp) / "bench-export.csv", args.trace_heap))
        if args.verify:
            log("verify_audit ...", quiet)
            results.update(bench_verify())
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        checkpoints.cleanup()
    if args.json:
        print(json.dumps(results))
    else:
        for key, value in results.items():
            print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
