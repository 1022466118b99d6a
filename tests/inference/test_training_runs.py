"""Training runs: recorded by admin, executed once by a Celery worker, progress and failures kept."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from inference import training
from inference.models import ModelVersion, TrainingRun
from inference.services import training_run_create, training_run_execute
from inference.tasks import train_model_task
from tests.inference.factories import TrainingRunFactory
from tests.support import celery_worker

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_create_records_audits_and_enqueues_after_commit(monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(train_model_task, "delay", lambda run_id: sent.append(run_id))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        run = training_run_create(actor="staff:alice", epochs=3, activate=True)
        assert sent == []  # nothing is enqueued before the row is committed
    assert len(callbacks) == 1 and sent == [run.pk]
    assert (run.status, run.epochs, run.activate, run.requested_by) == ("queued", 3, True, "staff:alice")
    event = AuditEvent.objects.get(action="model.train_requested")
    assert event.actor == "staff:alice" and event.detail["after"]["epochs"] == 3


def test_unreachable_broker_fails_the_run_visibly(monkeypatch, django_capture_on_commit_callbacks):
    def broken(run_id):
        raise ConnectionError("broker down")

    monkeypatch.setattr(train_model_task, "delay", broken)
    with django_capture_on_commit_callbacks(execute=True):
        run = training_run_create(actor="staff:alice")
    run.refresh_from_db()
    assert run.status == "failed" and "job queue is unavailable" in run.error


def test_execute_trains_registers_and_records_progress(fake_training):
    run = TrainingRunFactory(epochs=4, activate=True, region="us")
    finished = training_run_execute(run_id=run.pk)
    assert finished.status == "succeeded" and finished.progress == 1.0
    assert finished.model_version.status == "active" and finished.model_version.region == "us"
    assert finished.message.startswith("registered digits@1 (held-out accuracy") and "activated" in finished.message
    assert finished.started_at and finished.finished_at and finished.error == ""
    assert fake_training[0].epochs == 4
    assert ModelVersion.objects.get().created_by == run.requested_by


def test_progress_is_written_while_training(monkeypatch, trained):
    seen = []

    def observe(config=None, *, progress=None):
        progress(training.EpochProgress(epoch=1, epochs=4, loss=0.9, accuracy=0.5, elapsed=0.1))
        seen.append(TrainingRun.objects.values_list("status", "progress", "message").get())
        return trained

    monkeypatch.setattr(training, "train_model", observe)
    training_run_execute(run_id=TrainingRunFactory().pk)
    assert seen == [("running", 0.25, "epoch 1/4: loss 0.9000, accuracy 0.5000")]


def test_execute_is_idempotent(fake_training):
    run = TrainingRunFactory()
    training_run_execute(run_id=run.pk)
    again = training_run_execute(run_id=run.pk)
    assert again.status == "succeeded" and len(fake_training) == 1
    assert ModelVersion.objects.count() == 1


def test_a_run_held_by_a_live_worker_is_left_alone_but_a_stale_one_is_reclaimed(fake_training, settings):
    fresh = TrainingRunFactory(status="running", started_at=timezone.now())
    assert training_run_execute(run_id=fresh.pk).status == "running" and fake_training == []
    stale_start = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
    stale = TrainingRunFactory(status="running", started_at=stale_start)
    assert training_run_execute(run_id=stale.pk).status == "succeeded" and len(fake_training) == 1


def test_refused_training_fails_the_run_with_the_reason(monkeypatch):
    def refuse(config=None, *, progress=None):
        raise training.ParityError("Export refused by the parity gate: drift", figures={"max_abs_diff": 1.0})

    monkeypatch.setattr(training, "train_model", refuse)
    run = training_run_execute(run_id=TrainingRunFactory().pk)
    assert run.status == "failed" and "parity gate" in run.error and run.finished_at
    assert not ModelVersion.objects.exists()


def test_unexpected_errors_fail_the_run_and_propagate(monkeypatch):
    def crash(config=None, *, progress=None):
        raise MemoryError("out of memory")

    monkeypatch.setattr(training, "train_model", crash)
    run = TrainingRunFactory()
    with pytest.raises(MemoryError):
        training_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and run.error == "MemoryError: out of memory"


def test_missing_run_is_ignored():
    assert training_run_execute(run_id=999_999) is None


def test_task_runs_the_service_eagerly(celery_eager, fake_training, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run = training_run_create(actor="staff:alice")
    run.refresh_from_db()
    assert run.status == "succeeded" and run.model_version is not None
    assert train_model_task.name == "inference.train_model"


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_real_worker_trains_a_run_started_like_the_admin_does(model_store, settings):
    with celery_worker(MODEL_STORE_DIR=str(model_store)):
        run = training_run_create(actor="staff:alice", epochs=2, activate=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if run.status in ("succeeded", "failed"):
                break
            time.sleep(0.5)
    assert run.status == "succeeded", run.error
    version = run.model_version
    assert version.status == "active" and version.metrics["epochs"] == 2
    assert version.absolute_path().is_file()
