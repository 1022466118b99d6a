"""The one way a service hands work to Celery: by task name, with an explicit broker-failure policy.

Services never import their app's ``tasks`` module (the tasks import the
services, so that would be an import cycle); they enqueue by the task's
registered ``name=``.  What a broker outage means differs per kind of work, so
every caller states it:

- batch jobs: the job row stays ``queued`` and the beat task
  ``batch_jobs_recover_task`` re-enqueues it (:func:`leave_for_recovery`);
- training runs and audit exports: the row is marked failed, visibly, with the
  reason (the caller passes a function that does that).

``on_broker_failure`` is required: there is no silent default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import current_app

logger = logging.getLogger("gateway.queue")

BrokerFailurePolicy = Callable[[Exception], None]


def leave_for_recovery(exc: Exception) -> None:
    """Policy for work whose durable row a beat task re-enqueues: log and carry on."""
    logger.warning("broker unavailable; work left for recovery", extra={"error": str(exc)[:300]})


def task_enqueue(*, task: str, args: tuple[Any, ...] = (), on_broker_failure: BrokerFailurePolicy) -> bool:
    """Send ``task`` (a registered Celery task name) with ``args``; True when the broker took it.

    A broker error (kombu, redis and AMQP clients raise many types) calls
    ``on_broker_failure`` with the exception and returns False; whatever that
    policy raises propagates.  An unknown task name is a programming error and
    raises ``KeyError`` rather than passing for an outage.
    """
    app = current_app
    if task not in app.tasks:
        # A web process registers tasks only when their modules are imported:
        # run Celery's autodiscovery (every installed app's ``tasks`` module) once.
        app.loader.import_default_modules()
    registered = app.tasks[task]
    try:
        registered.delay(*args)
    except Exception as exc:  # any broker client error
        on_broker_failure(exc)
        return False
    return True
