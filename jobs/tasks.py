"""Celery tasks for batch jobs: run one job, and recover jobs whose worker died."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from jobs.services import (
    BATCH_JOB_RUN_TASK,
    ExecutionOutcome,
    batch_job_execute,
    batch_jobs_expire,
    batch_jobs_recover,
)


# Explicit names equal to the implicit ones of the pre-move module (jobs.tasks): messages already
# queued and the beat schedule (settings.CELERY_BEAT_SCHEDULE) carry them.
@shared_task(
    name=BATCH_JOB_RUN_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=20,
)
def batch_job_run(self, job_id: str) -> str:
    """Run or resume one job; a job leased by a live worker is retried after the lease."""
    worker = f"{self.request.hostname}:{self.request.id}"
    outcome = batch_job_execute(job_id=job_id, worker=worker)
    if outcome == ExecutionOutcome.LEASED_ELSEWHERE:
        raise self.retry(countdown=settings.JOB_LEASE_SECONDS, max_retries=1000)
    return outcome


@shared_task(
    name="gateway.jobs.tasks.batch_jobs_recover_task",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def batch_jobs_recover_task() -> int:
    """Beat task: re-enqueue jobs with expired leases or lost messages."""
    return batch_jobs_recover()


@shared_task(
    name="jobs.tasks.batch_jobs_expire_task",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def batch_jobs_expire_task() -> int:
    """Beat task: delete the results of jobs past ``expires_at`` (``JOB_RESULTS_TTL_DAYS``)."""
    return batch_jobs_expire()
