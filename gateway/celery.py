"""The Celery app: configured from Django settings under the ``CELERY_`` namespace."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

app = Celery("gateway")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _task_context_start(**kwargs: object) -> None:
    """A task starts with no request id or tenant left over from the previous task in this worker."""
    from core.logging import request_context_reset

    request_context_reset()


@task_postrun.connect
def _task_context_end(**kwargs: object) -> None:
    """A task leaves no request id or tenant behind for whatever runs next in this worker."""
    from core.logging import request_context_reset

    request_context_reset()


@worker_process_init.connect
def _tracing_start(**kwargs: object) -> None:
    """Each pool process exports its own spans (after the fork: the exporter thread must be the child's)."""
    from core.tracing import tracing_configure

    tracing_configure(service_name="maas-worker", celery=True)
