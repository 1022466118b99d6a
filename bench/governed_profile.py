#!/usr/bin/env python
"""Where the governed path's CPU goes: the profile behind the targets of issue 8.

Runs the gateway in-process (Django's WSGI handler called directly: no HTTP
server, no load generator) against one benchmark backend prepared by
``bench/run.py`` (``var/bench-<backend>``, its database, the ``bench`` tenant)
and reports, per request, CPU time (``time.process_time``) and wall time of:

- ``bare``: B4, the bare view;
- ``auth``, ``auth-quota``, ``auth-quota-policy``: the ablations;
- ``governed``: the real ``POST /v1/models/digits/predict``;
- ``governed, round trips stubbed``: the same with the quota call and the audit
  INSERT replaced by no-ops, which leaves the pure-Python cost of governance;
- the quota call and the audit INSERT timed *inside* governed requests, and the
  same two calls timed alone in a tight loop.

The difference between the last two is what a round trip costs the rest of a
request on this machine (the process sleeps, PostgreSQL or Redis runs, caches
go cold).  Each figure is the median of ``--runs`` runs of ``--requests``
requests.  ``--json`` prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's directory comes first on sys.path (and bench/policy.py
# would shadow the ``policy`` package): the repository root must come before it.
sys.path.insert(0, str(ROOT))

from bench._common import BACKENDS, backend_env, request_audit_fields  # noqa: E402

VARIANTS = {
    "bare": "/bench/bare/digits/predict",
    "auth": "/bench/auth/digits/predict",
    "auth-quota": "/bench/auth-quota/digits/predict",
    "auth-quota-policy": "/bench/auth-quota-policy/digits/predict",
    "governed": "/v1/models/digits/predict",
}


def _setup(backend: str) -> None:
    # The whole environment is replaced, not patched, so that this process sees exactly
    # what bench/run.py's gunicorn for the same backend saw (no stray DATABASE_URL).
    env = backend_env(backend)
    env["DJANGO_SETTINGS_MODULE"] = "gateway.settings"
    env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="maas-profile-prom-")
    os.environ.clear()
    os.environ.update(env)
    import django

    django.setup()


class _Timed:
    """Wraps a module attribute and sums the CPU and wall time of its calls."""

    def __init__(self, module: Any, name: str):
        self.module, self.name, self.original = module, name, getattr(module, name)
        self.calls = self.cpu_ns = self.wall_ns = 0

        def timed(*args: Any, **kwargs: Any) -> Any:
            cpu, wall = time.process_time_ns(), time.perf_counter_ns()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.cpu_ns += time.process_time_ns() - cpu
                self.wall_ns += time.perf_counter_ns() - wall
                self.calls += 1

        setattr(module, name, timed)

    def restore(self) -> dict[str, float]:
        setattr(self.module, self.name, self.original)
        calls = max(1, self.calls)
        return {"cpu_us": round(self.cpu_ns / calls / 1000, 1), "wall_us": round(self.wall_ns / calls / 1000, 1)}


def _one_run(fn: Callable[[], object], requests: int) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(requests):
        fn()
    return (time.process_time() - cpu) / requests * 1e6, (time.perf_counter() - wall) / requests * 1e6


def _medians(fns: dict[str, Callable[[], object]], requests: int, runs: int) -> dict[str, dict[str, float]]:
    """Interleaved runs of every callable (machines here are noisy), then the median of each."""
    for fn in fns.values():
        for _ in range(min(300, requests)):
            fn()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            samples[name].append(_one_run(fn, requests))
    return {
        name: {
            "cpu_us": round(statistics.median(c for c, _ in rows), 1),
            "wall_us": round(statistics.median(w for _, w in rows), 1),
        }
        for name, rows in samples.items()
    }


def measure(*, backend: str, requests: int, runs: int) -> dict[str, Any]:
    """Every figure of the report, in µs per request."""
    from django.core.handlers.wsgi import WSGIHandler
    from sklearn.datasets import load_digits

    from audit.services import audit_request_record
    from gateway import pipeline
    from inference.selectors import model_serving_get
    from policy.services import policy_decide
    from tenants.models import Tenant
    from tenants.services import api_key_authenticate, api_key_create, quota_reserve
    from tenants.services.quotas import Reservation

    tenant = Tenant.objects.get(slug="bench")
    raw_key = api_key_create(tenant=tenant, actor="bench", name="profile", scopes=["predict"]).raw_key
    app = WSGIHandler()
    body = json.dumps({"instances": [[float(v) for v in load_digits().data[0]]], "purpose": "research"}).encode()

    def request(path: str) -> Callable[[], object]:
        statuses: list[str] = []

        def call() -> object:
            environ = {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": path,
                "SCRIPT_NAME": "",
                "QUERY_STRING": "",
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "8000",
                "REMOTE_ADDR": "127.0.0.1",
                "CONTENT_TYPE": "application/json",
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_AUTHORIZATION": f"Bearer {raw_key}",
                "wsgi.input": io.BytesIO(body),
                "wsgi.url_scheme": "http",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "wsgi.errors": sys.stderr,
            }
            response = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
            content = b"".join(response)
            response.close()
            if not statuses[-1].startswith("200"):
                raise RuntimeError(f"{path} answered {statuses[-1]}: {content[:300]!r}")
            return content

        return call

    real = {"quota_reserve": quota_reserve, "audit_request_record": audit_request_record}
    stubs = {
        "quota_reserve": lambda *, principal, units: Reservation(units=units),
        "audit_request_record": lambda **fields: 0,
    }
    governed = request(VARIANTS["governed"])

    def stubbed() -> object:
        for name, stub in stubs.items():
            setattr(pipeline, name, stub)
        try:
            return governed()
        finally:
            for name, function in real.items():
                setattr(pipeline, name, function)

    principal = api_key_authenticate(raw_key=raw_key)
    model = model_serving_get(name="digits")
    decision = policy_decide(principal=principal, model=model.facts(), purpose="research", action="predict")

    # The row the governed request writes (same keys and value shapes); built once, like the
    # in-request timer below, which sees only the call and not the building of its arguments.
    fields = request_audit_fields(
        request_id="",
        input_digest="ab" * 32,
        actor=principal.actor,
        tenant_id=principal.tenant_id,
        tenant_slug=principal.tenant_slug,
        key_prefix=principal.key_prefix,
        region=principal.region,
        model_version=model.version,
        model_sha256=model.sha256,
        policy_versions=decision.policy_versions,
    )
    fns: dict[str, Callable[[], object]] = {name: request(path) for name, path in VARIANTS.items()}
    fns["governed, round trips stubbed"] = stubbed
    fns["quota call alone"] = lambda: quota_reserve(principal=principal, units=1)
    fns["audit call alone"] = lambda: audit_request_record(**fields | {"request_id": os.urandom(16).hex()})
    measured = _medians(fns, requests, runs)
    report: dict[str, Any] = {
        "backend": backend,
        "requests": requests,
        "runs": runs,
        "paths": {name: measured[name] for name in [*VARIANTS, "governed, round trips stubbed"]},
        "alone": {"quota": measured["quota call alone"], "audit": measured["audit call alone"]},
    }
    timers = [_Timed(pipeline, "quota_reserve"), _Timed(pipeline, "audit_request_record")]
    _one_run(governed, requests)
    report["in_request"] = {"quota": timers[0].restore(), "audit": timers[1].restore()}
    paths, inside, alone = report["paths"], report["in_request"], report["alone"]
    report["decomposition_cpu_us"] = {
        "governance_total (governed - bare)": round(paths["governed"]["cpu_us"] - paths["bare"]["cpu_us"], 1),
        "pure_python (stubbed - bare)": round(
            paths["governed, round trips stubbed"]["cpu_us"] - paths["bare"]["cpu_us"], 1
        ),
        "quota_call_alone": alone["quota"]["cpu_us"],
        "audit_insert_alone": alone["audit"]["cpu_us"],
        "round_trips_in_request (quota + audit inside requests)": round(
            inside["quota"]["cpu_us"] + inside["audit"]["cpu_us"], 1
        ),
    }
    return report


def render(report: dict[str, Any]) -> str:
    """A plain-text table of the report."""
    lines = [
        f"governed path, in-process, {report['backend']}: µs per request (median of {report['runs']} x "
        f"{report['requests']})",
        f"{'path':<34} {'CPU':>8} {'wall':>8}",
    ]
    for name, row in report["paths"].items():
        lines.append(f"{name:<34} {row['cpu_us']:>8.1f} {row['wall_us']:>8.1f}")
    for where in ("in_request", "alone"):
        for name, row in report[where].items():
            lines.append(
                f"{name + ' call, ' + where.replace('_', ' '):<34} {row['cpu_us']:>8.1f} {row['wall_us']:>8.1f}"
            )
    lines.append("decomposition (CPU µs):")
    lines += [f"  {name:<58} {value:>8.1f}" for name, value in report["decomposition_cpu_us"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="postgres+redis", choices=BACKENDS)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the report as one JSON line at the end")
    args = parser.parse_args(argv)
    _setup(args.backend)
    try:
        report = measure(backend=args.backend, requests=args.requests, runs=args.runs)
    finally:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    print(render(report))
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
