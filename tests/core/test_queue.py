"""The one task-enqueue helper: by registered name, with the caller's broker-failure policy."""

from __future__ import annotations

import pytest
from kombu.exceptions import OperationalError

from audit.tasks import audit_seal_task
from core.queue import leave_for_recovery, task_enqueue

pytestmark = [pytest.mark.embedded]


def test_a_sent_task_reports_true_and_reaches_the_task(monkeypatch):
    sent: list[tuple] = []
    monkeypatch.setattr(audit_seal_task, "delay", lambda *args: sent.append(args))
    failures: list[Exception] = []
    assert task_enqueue(task="audit.seal", args=(), on_broker_failure=failures.append) is True
    assert sent == [()] and failures == []


def test_a_broker_error_runs_the_callers_policy_and_reports_false(monkeypatch):
    def broker_down(*args):
        raise OperationalError("connection refused")

    monkeypatch.setattr(audit_seal_task, "delay", broker_down)
    failures: list[Exception] = []
    assert task_enqueue(task="audit.seal", on_broker_failure=failures.append) is False
    assert len(failures) == 1 and isinstance(failures[0], OperationalError)


def test_a_policy_may_turn_the_outage_into_an_error(monkeypatch):
    def broker_down(*args):
        raise OperationalError("connection refused")

    def refuse(exc: Exception) -> None:
        raise RuntimeError("refused") from exc

    monkeypatch.setattr(audit_seal_task, "delay", broker_down)
    with pytest.raises(RuntimeError, match="refused"):
        task_enqueue(task="audit.seal", on_broker_failure=refuse)


def test_leave_for_recovery_only_logs(caplog):
    leave_for_recovery(OperationalError("connection refused"))
    assert "left for recovery" in caplog.text


def test_an_unknown_task_name_is_a_programming_error_not_an_outage():
    failures: list[Exception] = []
    with pytest.raises(KeyError):
        task_enqueue(task="no.such.task", on_broker_failure=failures.append)
    assert failures == []


def test_every_task_has_an_explicit_name_that_the_schedule_and_services_use():
    """Names that queued messages, the beat schedule and the services refer to (kept across the move)."""
    from celery import current_app
    from django.conf import settings

    from audit.services.export import AUDIT_EXPORT_TASK
    from audit.services.oversight import AUDIT_VERIFY_TASK
    from inference.services.training_runs import TRAIN_MODEL_TASK
    from jobs.services import BATCH_JOB_RUN_TASK
    from monitoring.services.bundle import BUNDLE_TASK
    from monitoring.services.monitors import WINDOW_EVALUATE_TASK
    from monitoring.services.webhooks import DELIVER_TASK

    current_app.loader.import_default_modules()
    registered = set(current_app.tasks)
    expected = {AUDIT_EXPORT_TASK, AUDIT_VERIFY_TASK, TRAIN_MODEL_TASK, BATCH_JOB_RUN_TASK, "audit.seal", "audit.purge"}
    expected |= {WINDOW_EVALUATE_TASK, BUNDLE_TASK, DELIVER_TASK}
    expected |= {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert expected <= registered
    assert BATCH_JOB_RUN_TASK == "gateway.jobs.tasks.batch_job_run"
    assert "gateway.jobs.tasks.batch_jobs_recover_task" in registered
    # Tasks that test modules define (imported or not, depending on what ran first) are not the project's.
    project = {name for name in registered if not name.startswith(("celery.", "tests."))}
    assert project == expected | {"gateway.jobs.tasks.batch_jobs_recover_task"}
