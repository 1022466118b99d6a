"""Gunicorn settings shared by ``make run``, the end-to-end tests and the benchmarks."""

from __future__ import annotations

import os

from gateway.gunicorn_errors import install as _problem_rejections

worker_class = "sync"
timeout = 60
graceful_timeout = 10
keepalive = 5
# Not preloaded: a preloaded worker, told to stop, sleeps on a futex until the master kills it
# (SIGTERM took the whole 10 s graceful timeout with preload_app, 0.6 s without; the worker has one
# thread left), most likely a lock of a native thread pool started at import (numpy's OpenBLAS,
# ONNX Runtime) that the fork copied while held.
preload_app = False
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


def child_exit(server, worker) -> None:
    """Let prometheus-client's multiprocess mode drop a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker) -> None:
    """Flush the worker's live statistics (monitoring) before it goes: its last window is not lost."""
    try:
        from monitoring.services import live_stats_flush

        live_stats_flush()
    except Exception as exc:  # a worker that never served (no Django set up) has nothing to flush
        server.log.warning("live statistics not flushed at worker exit: %s", exc)
