"""Prometheus metrics, correct under several gunicorn workers.

prometheus-client's multiprocess mode is used when ``PROMETHEUS_MULTIPROC_DIR``
is set (``manage.py serve`` and the test servers set it): each worker writes
its samples to memory-mapped files in that directory and ``/metrics``
aggregates them.  Without it (a single process, unit tests) the default
registry is used.  ``/metrics`` is restricted to staff sessions or a bearer
token equal to ``METRICS_TOKEN``.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from core.errors import problem_response
from core.health import metrics_authorised

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter(
    "maas_http_requests_total", "HTTP requests by endpoint, status and tenant.", ["endpoint", "status", "tenant"]
)
REQUEST_LATENCY = Histogram(
    "maas_http_request_duration_seconds",
    "Whole-request latency by endpoint.",
    ["endpoint"],
    buckets=_LATENCY_BUCKETS,
)
REFUSALS = Counter("maas_refusals_total", "Requests refused, by reason code.", ["reason"])
INFERENCE_LATENCY = Histogram(
    "maas_inference_duration_seconds",
    "ONNX Runtime inference latency by model and version.",
    ["model", "version"],
    buckets=_LATENCY_BUCKETS,
)
AUDIT_WRITTEN = Counter("maas_audit_events_written_total", "Audit events written by the request pipeline.")
AUDIT_FAILED = Counter("maas_audit_write_failures_total", "Audit inserts that failed (request answered 503).")
AUDIT_SEALED = Gauge(
    "maas_audit_events_sealed", "Audit events sealed into signed blocks.", multiprocess_mode="mostrecent"
)
AUDIT_UNSEALED = Gauge("maas_audit_events_unsealed", "Audit events not yet sealed.", multiprocess_mode="mostrecent")
JOBS = Gauge("maas_jobs", "Batch jobs by state.", ["state"], multiprocess_mode="mostrecent")


def request_done(*, endpoint: str, status: int, tenant: str, seconds: float) -> None:
    """Count one finished request and observe its latency."""
    # Label values by position, in the declared order: keyword labels are sorted and checked on every call.
    REQUESTS.labels(endpoint, str(status), tenant or "-").inc()
    REQUEST_LATENCY.labels(endpoint).observe(seconds)


def refusal(*, reason: str) -> None:
    """Count a refusal (``rate_limited``, ``quota_exceeded``, ``policy_denied``, ...)."""
    REFUSALS.labels(reason=reason).inc()


def inference_latency(*, model: str, version: int, seconds: float) -> None:
    """Observe the time spent inside ONNX Runtime alone."""
    INFERENCE_LATENCY.labels(model=model, version=str(version)).observe(seconds)


def audit_written() -> None:
    """Count one audit event written on the request path."""
    AUDIT_WRITTEN.inc()


def audit_failed() -> None:
    """Count one failed audit insert."""
    AUDIT_FAILED.inc()


def _collect_state_gauges() -> None:
    """Refresh gauges that describe database state (sealing backlog, jobs) at scrape time."""
    from gateway.metrics_state import state_gauges_refresh

    state_gauges_refresh(sealed=AUDIT_SEALED, unsealed=AUDIT_UNSEALED, jobs=JOBS)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics`` in the Prometheus text format (staff or ``METRICS_TOKEN`` only)."""
    if not metrics_authorised(request):
        return problem_response(
            status=401 if not settings.METRICS_TOKEN or "HTTP_AUTHORIZATION" not in request.META else 403,
            code="metrics_forbidden",
            title="Metrics are restricted",
            detail="Log in as staff or send Authorization: Bearer <METRICS_TOKEN>.",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    _collect_state_gauges()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        payload = generate_latest(registry)
    else:
        payload = generate_latest()
    return HttpResponse(payload, content_type=CONTENT_TYPE_LATEST)
