"""``make bench-scale``: what a year of one tenant's traffic costs, measured against its size N.

    python bench/scale.py [--events 10000000] [--steps 10000,100000,1000000]
                          [--database-url postgres://.../maas_bench_scale] [--redis-url redis://.../9]

For every N (each step starts from a fresh database, so every step is "a
year of traffic" at its own rate) it writes N request events of one tenant,
spread evenly over the last 365 days, through PostgreSQL ``COPY`` with the
columns and values the request path's INSERT writes (``bench._common``'s
``request_audit_fields``; ``recorded_at`` is the database default), then
measures through the public entry points that exist today, so that the same
script measures whatever implementation they call once other work is merged:

- ``seal_events_per_s``: ``call_command("seal_audit")`` over all N;
- ``live_*``: sealing while requests flow: writer processes record request
  events through the request path's INSERT (``audit_request_record``) at
  ``--live-rate`` events/s for ``--live-seconds`` while this process runs a
  ``seal_audit`` pass every ``--live-interval`` seconds with the default
  seal lag; reported: the rate recorded, the slowest pass, the sealed rate
  within passes and the largest backlog left after a pass (it keeps up when
  every pass ends before the next is due and the backlog stays bounded);
- ``verify_full_s``: ``call_command("verify_audit", "--full")``; then one more
  day of traffic is written and sealed and ``verify_incremental_s`` is
  ``call_command("verify_audit")`` (incremental from the recorded pass);
- ``export_rows_per_s`` and ``export_rss_growth_mib``: the tenant's CSV
  export through ``audit_export_write`` (RSS sampled after every page);
- ``rollup_advance_s``: ``tenants.services.usage_rollups.usage_rollups_advance``
  when it exists (a note in the output when it does not);
- ``usage_p50_ms`` / ``usage_p95_ms``: ``GET /v1/usage`` through Django's
  test client (the full middleware stack and URL, a real API key);
- ``admin_tenant_p50_ms`` / ``p95``: the tenant's admin change page, as a
  superuser;
- ``quota_rebuild_ms``: the first ``quota_reserve`` after the tenant's Redis
  quota counters are deleted (a Redis loss), which rebuilds them from the
  durable record (``quota_warm_ms``: the next one);
- ``db_mib_per_million``: ``pg_database_size`` per million events;
- ``purge_month_s``: ``audit_purge`` with the clock 31 days ahead, so the
  oldest month of traffic is past the default retention (365 days).

Writes a markdown table to stdout and ``bench/results/scale-latest.md``, and
``bench/results/scale-latest.json``.  PostgreSQL only: the point is the
production backend at production sizes.  It is not part of ``make bench``.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's directory comes first on sys.path and bench/policy.py
# would shadow the ``policy`` package: put the repository root there instead.
sys.path[0] = str(ROOT)

from bench._common import DEFAULT_REDIS_URL, request_audit_fields  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DEFAULT_SCALE_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/maas_bench_scale"
SLUG = "scale"
COPY_BATCH = 20_000
REQUESTS = 40  # timed requests per latency measurement (after 3 warm-ups)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="N when --steps is not given")
    parser.add_argument("--steps", default="", help="comma-separated list of N, e.g. 10000,100000,1000000")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_SCALE_DATABASE_URL", DEFAULT_SCALE_DATABASE_URL),
        help="a throw-away PostgreSQL database: it is dropped and re-created for every step",
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument("--output", default=str(RESULTS / "scale-latest"), help="path prefix of the .md/.json")
    parser.add_argument("--live-rate", type=int, default=2000, help="events/s recorded while sealing (0: skip)")
    parser.add_argument("--live-seconds", type=float, default=60.0, help="how long requests flow while sealing")
    parser.add_argument("--live-interval", type=float, default=10.0, help="seconds between seal passes meanwhile")
    parser.add_argument("--live-writers", type=int, default=4, help="writer processes sharing --live-rate")
    args = parser.parse_args()
    args.step_list = [int(s.replace("_", "")) for s in args.steps.split(",") if s.strip()] or [args.events]
    if not args.database_url.startswith("postgres"):
        parser.error("bench-scale runs on PostgreSQL only (--database-url postgres://...)")
    return args


ARGS = parse_args()
os.environ["DATABASE_URL"] = ARGS.database_url
os.environ["REDIS_URL"] = ARGS.redis_url
# Quota keys are named by tenant id, and this scratch database numbers its tenants from 1 like any other:
# a namespace of its own keeps a gateway (or a test worker) sharing the Redis database out of its counters.
os.environ.setdefault("QUOTA_REDIS_PREFIX", "maas:bench-scale:q")
os.environ.setdefault("MAAS_VAR_DIR", str(ROOT / "var" / "bench-scale"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

# The admin page renders static URLs; the manifest storage would need a
# collectstatic first (as the tests, use the plain storage: same page, same queries).
settings.STORAGES = {
    **settings.STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

import psycopg  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from audit.models import AuditEvent  # noqa: E402
from audit.selectors import ExportFilters, audit_last_seq, audit_sealed_through  # noqa: E402
from audit.services import audit_export_write, audit_input_digest, audit_purge  # noqa: E402
from audit.services.recording import audit_request_record  # noqa: E402


# -- database per step ----------------------------------------------------------------
def recreate_database(url: str) -> None:
    """Drop and create the step's database (never the configured application database: it is ours)."""
    connections.close_all()
    base, _, name = url.rpartition("/")
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    call_command("migrate", verbosity=0)


def prepare_tenant() -> tuple[str, object]:
    """The tenant, limits that are enforced but never refuse, a usage:read key, a superuser."""
    out = io.StringIO()
    call_command("create_tenant", SLUG, "--name", "Scale", "--region", "eu", "--verified", stdout=out)
    big = "1000000000000"
    call_command(
        "set_quota", SLUG, "--rate", "1000000", "--burst", "1000000", "--daily", big, "--monthly", big, stdout=out
    )
    out = io.StringIO()
    call_command("create_api_key", SLUG, "--name", "scale", "--scopes", "predict", "usage:read", stdout=out)
    raw_key = out.getvalue().strip().splitlines()[-1].strip()
    user = get_user_model().objects.create_superuser("scale-admin", "scale@example.invalid", uuid.uuid4().hex)
    return raw_key, user


# -- events ----------------------------------------------------------------------------
def write_events(count: int, *, first_at, span: timedelta, tenant_id: int, key_prefix: str) -> float:
    """COPY ``count`` request events of the tenant, evenly from ``first_at`` over ``span``; seconds taken.

    Values are adapted once per template with each field's own
    ``get_db_prep_save`` (what the request path's INSERT sends), only the
    event id and the time change per row; ``recorded_at`` is the database's.
    """
    fields = [f for f in AuditEvent._meta.concrete_fields if f.name not in ("seq", "recorded_at")]
    names = [f.name for f in fields]
    quote = connection.ops.quote_name
    copy_sql = f"COPY {quote(AuditEvent._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) FROM STDIN"
    templates = []
    for i in range(997):
        values = {
            "event_type": "request",
            "occurred_at": None,
            "event_id": None,
            **request_audit_fields(
                request_id=uuid.uuid4().hex,
                input_digest=audit_input_digest(payload=str(i).encode()),
                actor=f"tenant:{SLUG}/key:{key_prefix}",
                tenant_id=tenant_id,
                tenant_slug=SLUG,
                key_prefix=key_prefix,
                client_ip=f"10.0.{i % 256}.{(i * 7) % 256}",
                latency_ms=2.5 + (i % 100) / 10,
                label=i % 10,
                top_probability=0.93,
                deny=("baseline/tier-high", "purpose_required") if i % 17 == 0 else None,
            ),
        }
        templates.append([f.get_db_prep_save(values.get(f.name, f.get_default()), connection) for f in fields])
    id_at, time_at = names.index("event_id"), names.index("occurred_at")
    by_name = {f.name: f for f in fields}
    prep_id, prep_time = by_name["event_id"].get_db_prep_save, by_name["occurred_at"].get_db_prep_save
    step = span / max(count, 1)
    started = time.perf_counter()
    made = 0
    with connection.cursor() as cursor:
        while made < count:
            n = min(COPY_BATCH, count - made)
            with cursor.cursor.copy(copy_sql) as copy:
                for j in range(made, made + n):
                    row = list(templates[j % len(templates)])
                    row[id_at] = prep_id(uuid.uuid4(), connection)
                    row[time_at] = prep_time(first_at + step * j, connection)
                    copy.write_row(row)
            made += n
            if made % 1_000_000 == 0:
                log(f"    written {made:,}")
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {quote(AuditEvent._meta.db_table)}")
    return time.perf_counter() - started


# -- measurements ------------------------------------------------------------------------
def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def latency(client: Client, path: str, **headers: str) -> tuple[float, float]:
    """p50/p95 milliseconds of ``GET path`` (three warm-ups first); any non-200 answer aborts the bench."""
    samples = []
    for i in range(REQUESTS + 3):
        started = time.perf_counter()
        response = client.get(path, **headers)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}: {response.content[:300]!r}")
        if i >= 3:
            samples.append(elapsed)
    return percentiles(samples)


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure_export() -> dict:
    samples = [rss_mib()]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scale-export.csv"
        with path.open("wb") as fh:
            seconds, manifest = timed(
                lambda: audit_export_write(
                    filters=ExportFilters(tenant=SLUG),
                    format="csv",
                    stream=fh,
                    actor="bench:scale",
                    source="bench",
                    file_name=path.name,
                    on_progress=lambda rows: samples.append(rss_mib()),
                )
            )
    return {
        "export_rows": manifest["row_count"],
        "export_rows_per_s": round(manifest["row_count"] / seconds),
        "export_rss_growth_mib": round(max(samples) - samples[0], 1),
    }


def _record_at_rate(start_at: float, seconds: float, rate: float, tenant_id: int, key_prefix: str, made) -> None:
    """A writer process: request events through the request path's INSERT, ``rate`` a second, paced."""
    connections.close_all()  # the parent's connection is the parent's
    n = 0
    while (now := time.perf_counter()) < start_at + seconds:
        due = int((now - start_at) * rate)
        while n < due:
            audit_request_record(
                **request_audit_fields(
                    request_id=uuid.uuid4().hex,
                    input_digest=audit_input_digest(payload=str(n).encode()),
                    actor=f"tenant:{SLUG}/key:{key_prefix}",
                    tenant_id=tenant_id,
                    tenant_slug=SLUG,
                    key_prefix=key_prefix,
                    label=n % 10,
                ),
            )
            n += 1
        time.sleep(0.002)
    made.value = n
    connections.close_all()


def measure_seal_while_recording(*, tenant_id: int, key_prefix: str) -> dict:
    """Seal passes every ``--live-interval`` s while writers record ``--live-rate`` events/s (module docstring)."""
    rate, seconds, interval = ARGS.live_rate, ARGS.live_seconds, ARGS.live_interval
    writers = ARGS.live_writers  # one process cannot commit 2,000 single-row transactions a second
    saved_lag = settings.AUDIT_SEAL_LAG_SECONDS
    settings.AUDIT_SEAL_LAG_SECONDS = 2.0  # production's default: events younger than this wait for the next pass
    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    counters = [ctx.Value("q", 0) for _ in range(writers)]
    start_at = time.perf_counter() + 0.5
    procs = [
        ctx.Process(target=_record_at_rate, args=(start_at, seconds, rate / writers, tenant_id, key_prefix, c))
        for c in counters
    ]
    for proc in procs:
        proc.start()
    passes: list[tuple[float, int, int]] = []
    try:
        time.sleep(max(0.0, start_at + interval - time.perf_counter()))
        while any(proc.is_alive() for proc in procs):
            before = audit_sealed_through()
            pass_s, _ = timed(lambda: call_command("seal_audit", stdout=io.StringIO()))
            after = audit_sealed_through()
            passes.append((pass_s, after - before, audit_last_seq() - after))
            time.sleep(max(0.0, interval - pass_s))
    finally:
        for proc in procs:
            proc.join()
        settings.AUDIT_SEAL_LAG_SECONDS = saved_lag
    recorded = sum(c.value for c in counters)
    sealing_s = sum(p[0] for p in passes)
    return {
        "live_recorded_per_s": round(recorded / seconds),
        "live_seal_passes": len(passes),
        "live_seal_pass_max_s": round(max((p[0] for p in passes), default=0.0), 2),
        "live_sealed_per_s": round(sum(p[1] for p in passes) / sealing_s) if sealing_s else None,
        "live_backlog_max": max((p[2] for p in passes), default=None),
    }


def rollup_advance() -> tuple[float | None, str]:
    try:
        from tenants.services.usage_rollups import usage_rollups_advance
    except ImportError:
        return None, "usage rollups not available (tenants.services.usage_rollups.usage_rollups_advance)"
    seconds, _ = timed(usage_rollups_advance)
    return seconds, ""


def quota_rebuild(raw_key: str) -> tuple[float | None, float | None, str]:
    """Delete the tenant's quota counters in Redis, then time the reserve that rebuilds them."""
    from core.redis import redis_client, redis_enabled
    from tenants.models import ApiKey
    from tenants.quota.types import quota_redis_namespace
    from tenants.selectors import principal_for_key
    from tenants.services.quotas import quota_refund, quota_reserve

    if not redis_enabled():
        return None, None, "no Redis: quota counters live in the database"
    key = next(k for k in ApiKey.objects.filter(tenant__slug=SLUG) if raw_key.startswith(k.prefix))
    principal = principal_for_key(key=key)
    client = redis_client()
    # Pooled connections may be stale after minutes of database work (or a Redis restart):
    # reconnect first, so the timing is the rebuild and not a reconnection.
    client.connection_pool.disconnect()
    client.ping()
    deleted = 0
    for name in client.scan_iter(match=f"{quota_redis_namespace()}*", count=1000):
        deleted += client.delete(name)
    rebuild_s, reservation = timed(lambda: quota_reserve(principal=principal, units=1))
    quota_refund(reservation=reservation)
    warm_s, reservation = timed(lambda: quota_reserve(principal=principal, units=1))
    quota_refund(reservation=reservation)
    return rebuild_s, warm_s, f"{deleted} Redis keys deleted"


def db_size_bytes() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        return int(cursor.fetchone()[0])


def run_step(n: int) -> dict:
    from tenants.models import Tenant

    log(f"== N = {n:,}: fresh database")
    recreate_database(ARGS.database_url)
    settings.AUDIT_SEAL_LAG_SECONDS = 0
    checkpoints = tempfile.TemporaryDirectory(prefix="bench-scale-checkpoints-")
    settings.AUDIT_CHECKPOINT_DIR = checkpoints.name
    settings.AUDIT_CHECKPOINT_SINKS = []
    raw_key, admin_user = prepare_tenant()
    tenant = Tenant.objects.get(slug=SLUG)
    key_prefix = next(k.prefix for k in tenant.api_keys.all() if raw_key.startswith(k.prefix))
    out: dict = {"events": n}
    now = timezone.now()
    year = timedelta(days=365)
    # A year of traffic ending a day ago; the last day is written later, for the incremental verification.
    first_at = now - year
    yearly = n
    day = max(1, yearly // 365)
    log(f"   writing {n - day:,} events")
    out["write_s"] = round(
        write_events(
            n - day, first_at=first_at, span=year - timedelta(days=1), tenant_id=tenant.pk, key_prefix=key_prefix
        ),
        1,
    )
    log("   seal_audit")
    seconds, _ = timed(lambda: call_command("seal_audit", stdout=io.StringIO()))
    out["seal_s"] = round(seconds, 1)
    out["seal_events_per_s"] = round((n - day) / seconds)
    log("   verify_audit --full")
    seconds, _ = timed(lambda: call_command("verify_audit", "--full", stdout=io.StringIO()))
    out["verify_full_s"] = round(seconds, 2)
    log(f"   one more day ({day:,} events), seal, verify_audit (incremental)")
    write_events(
        day, first_at=now - timedelta(days=1), span=timedelta(days=1), tenant_id=tenant.pk, key_prefix=key_prefix
    )
    call_command("seal_audit", stdout=io.StringIO())
    report_out = io.StringIO()
    seconds, _ = timed(lambda: call_command("verify_audit", "--json", stdout=report_out))
    report = json.loads(report_out.getvalue())
    out["verify_incremental_s"] = round(seconds, 2)
    out["verify_incremental_mode"] = report["mode"]
    out["verify_incremental_blocks"] = report["blocks_verified"]
    if ARGS.live_rate > 0:
        log(f"   sealing while {ARGS.live_rate:,} events/s are recorded ({ARGS.live_seconds:g} s)")
        out.update(measure_seal_while_recording(tenant_id=tenant.pk, key_prefix=key_prefix))
    log("   export (tenant, CSV)")
    out.update(measure_export())
    log("   usage rollups, GET /v1/usage, admin tenant page")
    rollup_s, note = rollup_advance()
    out["rollup_advance_s"] = round(rollup_s, 2) if rollup_s is not None else None
    if note:
        out["notes"] = [note]
    client = Client()
    out["usage_p50_ms"], out["usage_p95_ms"] = (
        round(v, 1) for v in latency(client, "/v1/usage", HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    )
    client.force_login(admin_user)
    out["admin_tenant_p50_ms"], out["admin_tenant_p95_ms"] = (
        round(v, 1) for v in latency(client, f"/admin/tenants/tenant/{tenant.pk}/change/")
    )
    log("   quota rebuild after Redis loss")
    try:
        rebuild_s, warm_s, note = quota_rebuild(raw_key)
    except Exception as exc:  # one failed measurement must not lose the others of a long run
        rebuild_s = warm_s = None
        note = f"quota rebuild not measured: {type(exc).__name__}: {exc}"
    out["quota_rebuild_ms"] = round(rebuild_s * 1000, 1) if rebuild_s is not None else None
    out["quota_warm_ms"] = round(warm_s * 1000, 2) if warm_s is not None else None
    out.setdefault("notes", []).append(note)
    size = db_size_bytes()
    out["db_mib"] = round(size / 2**20, 1)
    out["db_mib_per_million"] = round(size / 2**20 / (n / 1_000_000), 1)
    log("   purge one month (clock 31 days ahead)")
    seconds, result = timed(lambda: audit_purge(now=timezone.now() + timedelta(days=31), actor="bench:scale"))
    out["purge_month_s"] = round(seconds, 2)
    out["purge_month_events"] = result.events
    out["purge_month_blocks"] = result.blocks
    checkpoints.cleanup()
    return out


ROWS = [
    ("events", "N (events)"),
    ("seal_events_per_s", "seal (events/s)"),
    ("live_recorded_per_s", "while requests flow: events recorded (/s)"),
    ("live_sealed_per_s", "  sealed within passes (events/s)"),
    ("live_seal_pass_max_s", "  slowest seal pass (s)"),
    ("live_seal_passes", "  seal passes"),
    ("live_backlog_max", "  largest backlog after a pass (events)"),
    ("verify_full_s", "verify_audit --full (s)"),
    ("verify_incremental_s", "verify_audit incremental, +1 day (s)"),
    ("verify_incremental_blocks", "  blocks re-verified incrementally"),
    ("export_rows_per_s", "export CSV, tenant (rows/s)"),
    ("export_rss_growth_mib", "  export RSS growth (MiB)"),
    ("rollup_advance_s", "usage rollup advance (s)"),
    ("usage_p50_ms", "GET /v1/usage p50 (ms)"),
    ("usage_p95_ms", "GET /v1/usage p95 (ms)"),
    ("admin_tenant_p50_ms", "admin tenant page p50 (ms)"),
    ("admin_tenant_p95_ms", "admin tenant page p95 (ms)"),
    ("quota_rebuild_ms", "quota rebuild after Redis loss (ms)"),
    ("quota_warm_ms", "  quota reserve, warm (ms)"),
    ("purge_month_s", "purge one month (s)"),
    ("purge_month_events", "  events purged"),
    ("db_mib_per_million", "database MiB per million events"),
    ("write_s", "(setup) COPY of the events (s)"),
]


def markdown(results: list[dict], meta: dict) -> str:
    def cell(value: object) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = [
        f"# bench-scale ({meta['machine']}, PostgreSQL {meta['postgres']}, {meta['wall_s']:.0f} s wall, "
        f"load average {meta.get('load_average_1m', 'n/a')} at the end)",
        "",
        "| metric | " + " | ".join(f"N = {r['events']:,}" for r in results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    for key, label in ROWS[1:]:
        lines.append(f"| {label} | " + " | ".join(cell(r.get(key)) for r in results) + " |")
    notes = sorted({note for r in results for note in r.get("notes", []) if note and "Redis keys deleted" not in note})
    notes.append(
        "The purge removes whole sealed blocks (10,000 events): below about 120,000 events a year a block spans "
        "more than a month, so nothing is old enough yet."
    )
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def main() -> int:
    started = time.perf_counter()
    output = Path(ARGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    table = ""
    for n in ARGS.step_list:
        results.append(run_step(n))
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            postgres = cursor.fetchone()[0]
        meta = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "postgres": postgres,
            "steps": ARGS.step_list,
            "wall_s": time.perf_counter() - started,
            # Other processes on the machine change every figure: say how busy it was.
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
        # Written after every step: a long run that fails later keeps what it measured.
        table = markdown(results, meta)
        output.with_suffix(".md").write_text(table)
        output.with_suffix(".json").write_text(json.dumps({**meta, "results": results}, indent=1) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
