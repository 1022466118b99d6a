"""Training runs: requested from Django admin, executed by a Celery worker, never in a web process.

Training takes seconds to minutes and imports TensorFlow, so a web request
only records a :class:`~inference.models.TrainingRun` and enqueues
:func:`inference.tasks.train_model_task` after the transaction commits.  The
worker claims the run with one conditional UPDATE, so a redelivered task
(``acks_late``) never trains twice, while a run whose worker died is claimed
again once the task time limit has passed.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_change_record
from core.errors import DomainError
from core.queue import task_enqueue
from inference.models import RiskTier, TrainingRun
from inference.services.registry import governance_fields_check, model_version_train

if TYPE_CHECKING:
    from inference.training import EpochProgress

logger = logging.getLogger("inference.training_runs")


TRAIN_MODEL_TASK = "inference.train_model"  # the registered name of inference.tasks.train_model_task


def _enqueue(run_id: int) -> None:
    def fail_the_run(exc: Exception) -> None:
        # Broker-failure policy: the run must not stay "queued" silently; nothing re-enqueues it.
        logger.error("could not enqueue training run", extra={"training_run": run_id, "error": str(exc)[:300]})
        TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
            status=TrainingRun.Status.FAILED,
            error=f"The job queue is unavailable; the run was not started ({type(exc).__name__}: {exc}).",
            finished_at=timezone.now(),
        )

    task_enqueue(task=TRAIN_MODEL_TASK, args=(run_id,), on_broker_failure=fail_the_run)


def training_run_create(
    *,
    actor: str,
    model_name: str = "digits",
    epochs: int = 30,
    batch_size: int = 32,
    seed: int = 42,
    activate: bool = False,
    region: str = "eu",
    risk_tier: str = RiskTier.LIMITED,
) -> TrainingRun:
    """Record a training request and enqueue it for a worker once the transaction commits."""
    governance_fields_check(name=model_name, risk_tier=risk_tier, region=region)
    with transaction.atomic():
        run = TrainingRun.objects.create(
            model_name=model_name,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            activate=activate,
            region=region,
            risk_tier=risk_tier,
            requested_by=actor,
        )
        audit_change_record(
            actor=actor,
            action="model.train_requested",
            target=f"training_run:{run.pk}",
            after={
                "model_name": model_name,
                "epochs": epochs,
                "batch_size": batch_size,
                "seed": seed,
                "activate": activate,
                "region": region,
                "risk_tier": risk_tier,
            },
            event_type=AuditEvent.Type.MODEL_LIFECYCLE,
        )
        run_id = run.pk
        transaction.on_commit(lambda: _enqueue(run_id))
    return run


def _claim(run_id: int) -> bool:
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    return bool(
        TrainingRun.objects.filter(pk=run_id)
        .filter(Q(status=TrainingRun.Status.QUEUED) | Q(status=TrainingRun.Status.RUNNING, started_at__lt=stale))
        .update(status=TrainingRun.Status.RUNNING, started_at=now, progress=0.0, error="", message="starting")
    )


def training_run_execute(*, run_id: int) -> TrainingRun | None:
    """Claim and execute one run; a run that is finished or held by another worker is left alone.

    Returns the run as it ends (``None`` if it no longer exists).  Domain
    failures (parity gate, bad input) end the run as ``failed`` with the
    message; database errors put it back to ``queued`` and propagate so that
    the task retries.
    """
    if not _claim(run_id):
        run = TrainingRun.objects.filter(pk=run_id).first()
        if run is None:
            logger.warning("training run vanished", extra={"training_run": run_id})
        return run
    run = TrainingRun.objects.get(pk=run_id)

    def progress(step: EpochProgress) -> None:
        TrainingRun.objects.filter(pk=run_id).update(
            progress=round(step.epoch / step.epochs, 4),
            message=f"epoch {step.epoch}/{step.epochs}: loss {step.loss:.4f}, accuracy {step.accuracy:.4f}",
        )

    try:
        version = model_version_train(
            actor=run.requested_by,
            name=run.model_name,
            epochs=run.epochs,
            batch_size=run.batch_size,
            seed=run.seed,
            region=run.region,
            risk_tier=run.risk_tier,
            activate=run.activate,
            progress=progress,
        )
    except DomainError as exc:
        TrainingRun.objects.filter(pk=run_id).update(
            status=TrainingRun.Status.FAILED, error=exc.detail, finished_at=timezone.now(), message="failed"
        )
        run.refresh_from_db()
        return run
    except DatabaseError:
        TrainingRun.objects.filter(pk=run_id).update(status=TrainingRun.Status.QUEUED, message="retrying")
        raise
    except Exception as exc:
        TrainingRun.objects.filter(pk=run_id).update(
            status=TrainingRun.Status.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
            message="failed",
        )
        raise
    accuracy = version.accuracy
    TrainingRun.objects.filter(pk=run_id).update(
        status=TrainingRun.Status.SUCCEEDED,
        progress=1.0,
        model_version=version,
        finished_at=timezone.now(),
        message=f"registered {version.ref} (held-out accuracy {accuracy:.4f})"
        + (", activated" if version.status == version.Status.ACTIVE else ""),
    )
    run.refresh_from_db()
    return run
