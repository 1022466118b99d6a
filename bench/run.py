"""``make bench``: the governed path measured side by side with its baselines, in one run.

Variants (same gunicorn worker count, same ONNX file, single-threaded inference):

- B1  ONNX Runtime ``session.run`` in-process (from ``bench/inference.py``, as ``manage.py bench_inference``)
- B2  the TensorFlow model called directly and via ``predict`` (same command)
- B4  a bare Django view: same JSON in, same session, same JSON out, no governance
- B5  a minimal Django app (``bench/minimal``: no middleware, one view: parse
      JSON, ``session.run``, ``JsonResponse``) on its own gunicorn, same
      command, config and worker count: the floor for the gateway's own stack
- A1  + authentication;  A2  + quota;  A3  + policy   (ablations of G)
- G   the full governed ``POST /v1/models/digits/predict`` (+ durable audit)
- G2  the Open Inference Protocol ``POST /v2/models/digits/infer``

each on the embedded default (SQLite, no Redis) and on PostgreSQL + Redis, at
several concurrencies, repeated and interleaved; medians are reported, with
each variant's throughput as a ratio to B4 and to B5.  ``--variants`` and
``--load-only`` give a reduced run (a few variants, no in-process sections).
Writes ``bench/results/latest.md``, ``latest.json`` and ``latest.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, backend_env  # noqa: E402
from bench.loadgen import run_load  # noqa: E402

PY = sys.executable
BIN = Path(PY).parent
RESULTS = ROOT / "bench" / "results"

# B5, on a server of its own (bench/minimal), ahead of the gateway's variants in every table.
MINIMAL = "B5 minimal Django"
MINIMAL_PATH = "/predict/digits"
VARIANTS = {
    "B4 bare view": "/bench/bare/digits/predict",
    "A1 +auth": "/bench/auth/digits/predict",
    "A2 +quota": "/bench/auth-quota/digits/predict",
    "A3 +policy": "/bench/auth-quota-policy/digits/predict",
    "G governed v1": "/v1/models/digits/predict",
    "G2 governed v2": "/v2/models/digits/infer",
}
# The governed v1 path again on a second server that exports OpenTelemetry spans (OTLP/HTTP to a
# collector in this process that accepts and drops them): the cost of leaving tracing on.
TRACED = "GT governed v1, tracing on"
ALL_VARIANTS = {MINIMAL: MINIMAL_PATH, **VARIANTS, TRACED: VARIANTS["G governed v1"]}


def log(message: str) -> None:
    print(message, flush=True)


def sample_instance() -> list[float]:
    """One real handwritten digit (scikit-learn's bundled data set)."""
    from sklearn.datasets import load_digits

    return [float(v) for v in load_digits().data[0]]


def manage(env: dict[str, str], *args: str, capture: bool = False) -> str:
    result = subprocess.run(
        [PY, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return result.stdout if capture else ""


def _create_pg_database(url: str) -> None:
    """Create the benchmark's PostgreSQL database when it does not exist yet."""
    import psycopg

    base, _, dbname = url.rpartition("/")
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{dbname}"')


def prepare(env: dict[str, str]) -> str:
    """Migrate, model, a bench tenant whose limits never refuse (but are still enforced)."""
    if "DATABASE_URL" in env:
        _create_pg_database(env["DATABASE_URL"])
    # Every variant serves ``digits``: the bundled regression and image models are not trained here.
    manage(env, "bootstrap", "--skip-model")
    manage(env, "ensure_default_model")
    if not _tenant_exists(env):
        manage(env, "create_tenant", "bench", "--name", "Benchmark", "--region", "eu", "--verified", capture=True)
    manage(
        env,
        "set_quota",
        "bench",
        "--rate",
        "1000000",
        "--burst",
        "1000000",
        "--daily",
        "1000000000000",
        "--monthly",
        "1000000000000",
        capture=True,
    )
    out = manage(
        env, "create_api_key", "bench", "--name", "bench", "--scopes", "predict", "jobs", "usage:read", capture=True
    )
    return out.strip().splitlines()[-1].strip()


def _django_print(env: dict[str, str], code: str) -> str:
    """The last line ``code`` prints in a Django process on ``env``'s backend."""
    out = subprocess.run(
        [PY, "-c", f"import django;django.setup();{code}"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "gateway.settings"},
        text=True,
        capture_output=True,
        check=True,
    ).stdout
    return out.strip().splitlines()[-1]


def _tenant_exists(env: dict[str, str]) -> bool:
    return (
        _django_print(env, "from tenants.models import Tenant;print(Tenant.objects.filter(slug='bench').exists())")
        == "True"
    )


def model_file(env: dict[str, str]) -> str:
    """The ONNX file the gateway serves as ``digits`` on this backend (B5 loads the same file)."""
    return _django_print(
        env, "from inference.selectors import model_serving_get;print(model_serving_get(name='digits').spec.path)"
    )


def start_server(
    env: dict[str, str],
    port: int,
    workers: int,
    *,
    app: str = "gateway.wsgi:application",
    probe: str = "/healthz",
    probe_status: int = 200,
) -> subprocess.Popen:
    import requests

    prom = Path(env["MAAS_VAR_DIR"]) / "prometheus"
    prom.mkdir(parents=True, exist_ok=True)
    for f in prom.glob("*.db"):
        f.unlink()
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(prom)}
    proc = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            app,
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--config",
            "python:gateway.gunicorn_conf",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    for _ in range(150):
        try:
            if requests.get(f"http://127.0.0.1:{port}{probe}", timeout=1).status_code == probe_status:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("gunicorn did not start")


def worker_pids(master: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    except OSError:
        return []


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except OSError:
            continue
    return total


def bodies(instance: list[float]) -> dict[str, bytes]:
    v1 = json.dumps({"instances": [instance], "purpose": "research"}).encode()
    v2 = json.dumps(
        {
            "inputs": [{"name": "pixels", "shape": [1, len(instance)], "datatype": "FP32", "data": instance}],
            "parameters": {"purpose": "research"},
        }
    ).encode()
    return {name: (v2 if "v2" in name else v1) for name in ALL_VARIANTS}


def null_collector() -> tuple[str, Any]:
    """An OTLP/HTTP endpoint that reads and drops every export (so tracing pays its full client cost)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def _measure(
    name: str,
    groups: list[tuple[str, subprocess.Popen, dict[str, str]]],
    args,
    key: str,
    payloads: dict[str, bytes],
    repeat: int,
    rows: list[dict],
) -> None:
    """One repeat: every concurrency, and at each every variant of every server (interleaved)."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    for concurrency in args.concurrency:
        for base, server, variants in groups:
            for variant, path in variants.items():
                pids = worker_pids(server.pid)
                cpu_before = cpu_seconds(pids)
                result = run_load(
                    base + path,
                    body=payloads[variant],
                    headers=headers,
                    concurrency=concurrency,
                    duration=args.duration,
                )
                cpu = cpu_seconds(pids) - cpu_before
                row = {
                    "backend": name,
                    "variant": variant,
                    "concurrency": concurrency,
                    "repeat": repeat,
                    "rps": result.rps(),
                    "p50_ms": result.percentile(50) * 1000,
                    "p95_ms": result.percentile(95) * 1000,
                    "p99_ms": result.percentile(99) * 1000,
                    "cpu_us_per_req": (cpu / result.requests * 1e6) if result.requests else float("nan"),
                    "requests": result.requests,
                    "errors": result.errors,
                    "statuses": result.statuses,
                }
                rows.append(row)
                log(
                    f"   {name:15} c={concurrency:<3} {variant:16} {row['rps']:8.1f} rps"
                    f"  p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms"
                    f"  cpu {row['cpu_us_per_req']:7.0f} µs  errors {result.errors}"
                )


def measure_backend(name: str, args, instance: list[float]) -> list[dict]:
    import signal

    env = backend_env(name)
    log(f"==> preparing {name}")
    key = prepare(env)
    port = args.port_base + (0 if name == "embedded" else 1)
    selected = set(args.variants)
    gateway_variants = {v: p for v, p in VARIANTS.items() if v in selected}
    servers: list[subprocess.Popen] = []
    groups: list[tuple[str, subprocess.Popen, dict[str, str]]] = []
    collector = None
    try:
        if MINIMAL in selected:
            minimal_env = {
                **env,
                "DJANGO_SETTINGS_MODULE": "bench.minimal.settings",
                "BENCH_MODEL_PATH": model_file(env),
            }
            minimal = start_server(
                minimal_env,
                port + 20,
                args.workers,
                app="bench.minimal.wsgi:application",
                probe=MINIMAL_PATH,
                probe_status=405,
            )
            servers.append(minimal)
            groups.append((f"http://127.0.0.1:{port + 20}", minimal, {MINIMAL: MINIMAL_PATH}))
        if gateway_variants:
            server = start_server(env, port, args.workers)
            servers.append(server)
            groups.append((f"http://127.0.0.1:{port}", server, gateway_variants))
        if TRACED in selected:
            # Interleaved with the untraced runs of the same repeat: both see the same machine noise.
            endpoint, collector = null_collector()
            traced_env = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "maas-bench"}
            traced = start_server(traced_env, port + 10, args.workers)
            servers.append(traced)
            groups.append((f"http://127.0.0.1:{port + 10}", traced, {TRACED: ALL_VARIANTS[TRACED]}))
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        payloads = bodies(instance)
        for base, _, variants in groups:  # warm every worker on every path
            for variant, path in variants.items():
                run_load(
                    base + path, body=payloads[variant], headers=headers, concurrency=args.workers * 2, duration=0.5
                )
        rows: list[dict] = []
        for repeat in range(args.repeats):
            _measure(name, groups, args, key, payloads, repeat, rows)
    finally:
        for proc in servers:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        if collector is not None:
            collector.shutdown()
    return rows


def medians(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["backend"], row["variant"], row["concurrency"]), []).append(row)
    out = []
    for (backend, variant, concurrency), items in groups.items():
        out.append(
            {
                "backend": backend,
                "variant": variant,
                "concurrency": concurrency,
                **{
                    k: statistics.median(r[k] for r in items)
                    for k in ("rps", "p50_ms", "p95_ms", "p99_ms", "cpu_us_per_req")
                },
                "errors": sum(r["errors"] for r in items),
                "runs": len(items),
            }
        )
    return out


def inprocess_baselines(args) -> dict:
    """B1 and B2 from ``bench/inference.py`` (``manage.py bench_inference`` without Django), or ``{"error": ...}``."""
    cmd = [PY, "bench/inference.py", "--json"]
    if args.smoke:
        cmd += ["--epochs", "2", "--seconds", "0.2"]
    return _run_json(cmd, backend_env("embedded"))


def _json_report(out: str) -> dict:
    """The JSON a sub-benchmark printed: its whole stdout, or its last line after progress text."""
    try:
        return json.loads(out)
    except ValueError:
        return json.loads(out.strip().splitlines()[-1])


def _run_json(cmd: list[str], env: dict[str, str], *, timeout: float = 600) -> dict:
    """Run a sub-benchmark and return its JSON report, or ``{"error": ...}``.

    One failing sub-benchmark must not lose the rest of a run that takes minutes:
    the error is kept (with the end of its stderr) and shown in the report.
    """
    try:
        out = subprocess.run(cmd, cwd=ROOT, env=env, text=True, capture_output=True, check=True, timeout=timeout).stdout
        return _json_report(out)
    except subprocess.CalledProcessError as exc:
        return {"error": f"{exc}: {(exc.stderr or '')[-400:]}"}
    except (subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        return {"error": str(exc)[:500]}


def component_benches(args) -> dict:
    """Per-stage microbenchmarks (auth, policy, quota; policy at scale; audit) that the apps provide.

    Each runs on the embedded environment (no ``DATABASE_URL``, no
    ``REDIS_URL``) plus only its explicit overrides.  With PostgreSQL + Redis
    among the backends, the quota is also measured on that Redis and the
    audit write on that PostgreSQL (a throw-away database).
    """
    smoke = args.smoke
    with_services = "postgres+redis" in args.backends.split(",")
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    database_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    audit_extra = ["--events", str(args.audit_events)] + (["--records", "200"] if smoke else [])
    jobs: list[tuple[str, str, list[str], dict[str, str]]] = [
        (
            "auth_quota",
            "bench/auth_quota.py",
            (["--iterations", "200", "--runs", "1"] if smoke else [])
            + (["--redis-url", redis_url] if with_services else []),
            {},
        ),
        ("policy", "bench/policy.py", ["--runs", "1", "--decisions", "2000"] if smoke else [], {}),
        ("audit", "bench/audit.py", audit_extra, {}),
        ("monitoring_live", "bench/monitoring_live.py", ["--repeat", "2000"] if smoke else [], {}),
    ]
    if with_services:
        jobs.append(("audit_postgres", "bench/audit.py", audit_extra, {"DATABASE_URL": database_url}))
    embedded = backend_env("embedded")
    return {
        name: _run_json([PY, script, "--json", *extra], {**embedded, **overrides})
        for name, script, extra, overrides in jobs
    }


def targets(table: list[dict], baselines: dict, components: dict) -> list[str]:
    """The issue's budget, each figure computed from this run."""
    index = {(r["backend"], r["variant"], r["concurrency"]): r for r in table}
    lines = ["## Targets (issue #8), from this run", "", "| measure | backend | result | target |", "|---|---|---|---|"]
    for backend in sorted({r["backend"] for r in table}):
        for variant in ("G governed v1", "G2 governed v2"):
            g8, b8 = index.get((backend, variant, 8)), index.get((backend, "B4 bare view", 8))
            if g8 and b8 and b8["rps"]:
                lines.append(
                    f"| {variant.split()[0]}/B4 throughput, c=8 | {backend} | "
                    f"{g8['rps'] / b8['rps']:.2f} ({g8['rps']:.0f} vs {b8['rps']:.0f} req/s) | ≥ 0.70 |"
                )
            g1, b1 = index.get((backend, variant, 1)), index.get((backend, "B4 bare view", 1))
            if g1 and b1:
                added = g1["p50_ms"] - b1["p50_ms"]
                lines.append(f"| {variant.split()[0]} added p50, c=1 | {backend} | {added:+.2f} ms | ≤ 1 ms |")
        traced, untraced = index.get((backend, TRACED, 8)), index.get((backend, "G governed v1", 8))
        if traced and untraced and untraced["rps"]:
            lines.append(
                f"| tracing on / off, governed v1, c=8 | {backend} | {traced['rps'] / untraced['rps']:.2f} "
                f"({traced['rps']:.0f} vs {untraced['rps']:.0f} req/s; CPU {traced['cpu_us_per_req']:.0f} vs "
                f"{untraced['cpu_us_per_req']:.0f} µs/req) | measured, no target |"
            )
    for backend, row in (components.get("auth_quota") or {}).items():
        if isinstance(row, dict) and "auth_quota_policy_cpu_us" in row:
            lines.append(
                f"| auth + quota + policy CPU (in-process) | {backend} | {row['auth_quota_policy_cpu_us']:.0f} µs "
                f"(wall {row['auth_quota_policy_us']:.0f} µs) | ≤ 150 µs |"
            )
    for name in ("audit", "audit_postgres"):
        row = components.get(name) or {}
        if "record_us" in row:
            lines.append(
                f"| audit write: 1 INSERT, 1 round trip | {row.get('backend', name)} | p50 {row['record_us']:.0f} µs, "
                f"CPU {row.get('record_cpu_us', float('nan')):.0f} µs | 1 round trip |"
            )
    live = components.get("monitoring_live") or {}
    for row in live.get("batches", []):
        lines.append(
            f"| live statistics (monitoring), {live['width']} features, batch {row['batch']} | in-process | "
            f"{row['per_instance_us']:.1f} µs per instance | {'< 20 µs' if row['batch'] == 1 else 'measured'} |"
        )
    ort, tf = _batch1(baselines)
    if ort and tf:
        lines.append(f"| ORT vs TF direct call, batch 1 | in-process | {tf / ort:.0f}x faster | ≥ 10x |")
    return [*lines, ""]


def floor_ratios(table: list[dict]) -> list[str]:
    """The bare view and the governed path against the minimal Django app (B5), at every concurrency."""
    index = {(r["backend"], r["variant"], r["concurrency"]): r for r in table}
    lines = [
        "## Against a minimal Django app (B5, issue #15), from this run",
        "",
        "| measure | backend | result | target |",
        "|---|---|---|---|",
    ]
    for backend, variant, concurrency in sorted({(r["backend"], r["variant"], r["concurrency"]) for r in table}):
        target = {"B4 bare view": "≥ 0.90", "G governed v1": "≥ 0.60", "G2 governed v2": "measured"}.get(variant)
        floor, row = index.get((backend, MINIMAL, concurrency)), index[(backend, variant, concurrency)]
        if target and floor and floor["rps"]:
            lines.append(
                f"| {variant.split()[0]}/B5 throughput, c={concurrency} | {backend} | "
                f"{row['rps'] / floor['rps']:.2f} ({row['rps']:.0f} vs {floor['rps']:.0f} req/s) | {target} |"
            )
    return [*lines, ""]


def _batch1(baselines: dict) -> tuple[float | None, float | None]:
    """ONNX Runtime and TensorFlow direct-call median milliseconds at batch 1 (``bench_inference``'s report)."""
    cases = {row.get("case"): row.get("median_ms") for row in baselines.get("results", []) if row.get("batch") == 1}
    return cases.get("onnxruntime"), cases.get("tf model(x)")


def governed_profiles(args) -> dict:
    """``bench/governed_profile.py`` on each backend (its database was prepared by ``measure_backend``)."""
    extra = ["--requests", "200", "--runs", "1"] if args.smoke else []
    # The script builds its own environment for --backend (from this one, minus the user's services).
    return {
        backend: _run_json([PY, "bench/governed_profile.py", "--backend", backend, "--json", *extra], dict(os.environ))
        for backend in args.backends.split(",")
    }


def render_profiles(profiles: dict) -> list[str]:
    """The in-process decomposition of the governed path's CPU, per backend."""
    lines = ["## Where the governed path's CPU goes (in-process, `bench/governed_profile.py`)", ""]
    for backend, report in profiles.items():
        if "error" in report:
            lines += [f"{backend}: failed: {report['error']}", ""]
            continue
        lines += [f"| {backend} | CPU µs/req | wall µs/req |", "|---|---:|---:|"]
        for name, row in report["paths"].items():
            lines.append(f"| {name} | {row['cpu_us']:.0f} | {row['wall_us']:.0f} |")
        for where in ("in_request", "alone"):
            for name, row in report[where].items():
                label = f"{name} call, {where.replace('_', ' ')}"
                lines.append(f"| {label} | {row['cpu_us']:.0f} | {row['wall_us']:.0f} |")
        lines.append("")
        lines += [f"- {name}: {value:.0f} µs CPU" for name, value in report["decomposition_cpu_us"].items()]
        lines.append("")
    return lines


def render(table: list[dict], baselines: dict, components: dict, args, profiles: dict | None = None) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"gunicorn {args.workers} sync workers; load from a separate process on loopback; "
        f"{args.repeats} interleaved repeats of {args.duration}s per cell, medians.",
        "",
        "| backend | variant | c | req/s | p50 ms | p95 ms | p99 ms | CPU µs/req | /B4 thr | /B5 thr | p50 - B4 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    index = {(r["backend"], r["variant"], r["concurrency"]): r for r in table}
    for r in sorted(table, key=lambda r: (r["backend"], r["concurrency"], list(ALL_VARIANTS).index(r["variant"]))):
        base = index.get((r["backend"], "B4 bare view", r["concurrency"]))
        floor = index.get((r["backend"], MINIMAL, r["concurrency"]))
        ratio = r["rps"] / base["rps"] if base and base["rps"] else float("nan")
        to_floor = r["rps"] / floor["rps"] if floor and floor["rps"] else float("nan")
        added = r["p50_ms"] - base["p50_ms"] if base else float("nan")
        lines.append(
            f"| {r['backend']} | {r['variant']} | {r['concurrency']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
            f"{r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {r['cpu_us_per_req']:.0f} | {ratio:.2f} | {to_floor:.2f} | "
            f"{added:+.2f} |"
        )
    lines += ["", *targets(table, baselines, components), *floor_ratios(table)]
    lines += render_profiles(profiles or {})
    lines += ["## In-process inference baselines (B1, B2)", "", "```", json.dumps(baselines, indent=2), "```"]
    lines += ["", "## Component microbenchmarks", "", "```", json.dumps(components, indent=2), "```", ""]
    return "\n".join(lines)


def chart(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = sorted({r["backend"] for r in table})
    concurrencies = sorted({r["concurrency"] for r in table})
    fig, axes = plt.subplots(len(backends), 2, figsize=(13, 4.2 * len(backends)), squeeze=False)
    width = 0.8 / len(ALL_VARIANTS)
    for row_index, backend in enumerate(backends):
        for col, (metric, label) in enumerate((("rps", "requests/s"), ("p50_ms", "p50 latency (ms)"))):
            ax = axes[row_index][col]
            for i, variant in enumerate(ALL_VARIANTS):
                values = [
                    next(
                        (
                            r[metric]
                            for r in table
                            if r["backend"] == backend and r["variant"] == variant and r["concurrency"] == c
                        ),
                        0,
                    )
                    for c in concurrencies
                ]
                ax.bar([x + i * width for x in range(len(concurrencies))], values, width, label=variant)
            ax.set_xticks([x + width * (len(ALL_VARIANTS) - 1) / 2 for x in range(len(concurrencies))])
            ax.set_xticklabels([f"c={c}" for c in concurrencies])
            ax.set_title(f"{backend}: {label}")
            ax.set_ylabel(label)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _variant_names(codes: str) -> list[str]:
    """``B5,B4,G`` as the variants' full names (their first word is the code)."""
    by_code = {name.split()[0]: name for name in ALL_VARIANTS}
    unknown = [code for code in codes.split(",") if code not in by_code]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown variant code(s) {', '.join(unknown)}; known: {', '.join(by_code)}")
    return [by_code[code] for code in codes.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="seconds, not minutes: CI's check that this runs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=2.5)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32])
    parser.add_argument("--backends", default="embedded,postgres+redis")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--audit-events", type=int, default=100_000)
    parser.add_argument("--output", default=str(RESULTS / "latest"))
    parser.add_argument(
        "--port-base", type=int, default=18000, help="loopback ports used: base+{0,1} (+10 traced, +20 B5)"
    )
    parser.add_argument(
        "--variants",
        type=_variant_names,
        default=list(ALL_VARIANTS),
        help="comma-separated codes of the variants to serve and load (B5,B4,A1,A2,A3,G,G2,GT); default all",
    )
    parser.add_argument(
        "--load-only",
        action="store_true",
        help="only the HTTP load table: no in-process profile, B1/B2 baselines or component microbenchmarks",
    )
    args = parser.parse_args()
    if args.smoke:
        args.repeats, args.duration, args.concurrency = 1, 0.5, [1, 4]
        args.backends, args.audit_events = "embedded", 2000
        args.variants, args.load_only = list(ALL_VARIANTS), False
    started = time.monotonic()
    instance = sample_instance()
    rows: list[dict] = []
    for backend in args.backends.split(","):
        rows += measure_backend(backend, args, instance)
    table = medians(rows)
    profiles: dict = {}
    baselines: dict = {}
    components: dict = {}
    if not args.load_only:
        log("==> in-process profile of the governed path")
        profiles = governed_profiles(args)
        log("==> in-process baselines (B1 ONNX Runtime, B2 TensorFlow)")
        baselines = inprocess_baselines(args)
        log("==> component microbenchmarks")
        components = component_benches(args)
    report = render(table, baselines, components, args, profiles)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".md").write_text(report)
    output.with_suffix(".json").write_text(
        json.dumps(
            {"table": table, "raw": rows, "baselines": baselines, "components": components, "profiles": profiles},
            indent=2,
            default=str,
        )
    )
    chart(table, output.with_suffix(".png"))
    print(report)
    log(f"==> done in {time.monotonic() - started:.0f}s; wrote {output}.md/.json/.png")
    failed = [r for r in table if r["errors"] and r["rps"] == 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
