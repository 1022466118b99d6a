"""Gunicorn settings shared by ``make run``, the end-to-end tests and the benchmarks."""

from __future__ import annotations

import os

worker_class = "sync"
timeout = 60
graceful_timeout = 10
keepalive = 5
# Fork after loading Django so every worker shares the imported code pages.
preload_app = False
accesslog = None
errorlog = "-"
loglevel = "warning"


def child_exit(server, worker) -> None:
    """Let prometheus-client's multiprocess mode drop a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
