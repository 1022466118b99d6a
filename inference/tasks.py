"""Celery tasks of the inference app: training runs on a worker, never in a web process."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from inference.services import training_run_execute
from inference.services.rollouts import ROLLOUTS_EVALUATE_TASK, rollouts_evaluate
from inference.services.training_runs import TRAIN_MODEL_TASK


@shared_task(
    name=TRAIN_MODEL_TASK,
    acks_late=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=3,
)
def train_model_task(training_run_id: int) -> str | None:
    """Execute one :class:`~inference.models.TrainingRun` by id; idempotent (a finished run is left alone)."""
    run = training_run_execute(run_id=training_run_id)
    return run.status if run is not None else None


@shared_task(name=ROLLOUTS_EVALUATE_TASK, ignore_result=True)
def rollouts_evaluate_task() -> list[int]:
    """Roll back the active rollouts whose figures cross their thresholds (beat); idempotent."""
    return [rollout.pk for rollout in rollouts_evaluate()]
