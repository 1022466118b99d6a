"""Gunicorn settings shared by ``make run``, the end-to-end tests and the benchmarks."""

from __future__ import annotations

import os

from gateway.gunicorn_errors import install as _problem_rejections

worker_class = "sync"
timeout = 60
graceful_timeout = 10
keepalive = 5
# Fork after loading Django so every worker shares the imported code pages (and a worker that
# gunicorn replaces starts in milliseconds instead of importing Django, DRF and ONNX Runtime again).
# What a process holds privately is made after the fork: database connections (closed in
# pre_fork), the per-thread Redis connection (core.redis checks the pid), ONNX sessions (loaded
# on first use), prometheus values (keyed by pid) and the OpenTelemetry exporter thread (the
# SDK restarts it in the child).
preload_app = True
accesslog = None
errorlog = "-"
loglevel = "warning"

# Requests gunicorn itself refuses (answered problem+json by gateway.gunicorn_errors, never
# reaching Django or the audit trail; gunicorn's error log records each).  Explicit, so that
# the README's figures are these: a request line (method, path and query) of at most 8190
# bytes (gunicorn's maximum; 414 beyond), at most 100 header fields (431), each at most 8190
# bytes (431).  A NUL, CR or LF inside a header value is always refused (400).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
_problem_rejections()


def pre_fork(server, worker) -> None:
    """A connection the master opened while loading the app must not be shared by its children."""
    from django.db import connections

    connections.close_all()


def child_exit(server, worker) -> None:
    """Let prometheus-client's multiprocess mode drop a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
