"""Issue #13, privacy: a job's raw input is deleted when it ends, its results expire and the job says when.

Policy keeps keyed digests of inputs, not the inputs; a job needs its input
only while it runs, and its results only for ``JOB_RESULTS_TTL_DAYS``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from jobs.models import BatchJob
from jobs.services import ExecutionOutcome, batch_job_execute, batch_jobs_expire
from jobs.tasks import batch_jobs_expire_task
from tests.support import assert_problem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture(autouse=True)
def _jobs_dir(settings, tmp_path):
    settings.JOBS_DIR = str(tmp_path / "jobs")
    settings.JOB_CHUNK_SIZE = 300
    settings.JOB_RESULTS_TTL_DAYS = 7


def submit(client, caller, rows) -> str:
    body = {"model": "digits", "instances": rows, "purpose": "research"}
    response = client.post("/v1/jobs", data=json.dumps(body), content_type="application/json", **caller.headers)
    assert response.status_code == 202, response.content
    return response.json()["id"]


def test_the_raw_input_is_deleted_when_a_job_succeeds_and_results_expire_after_the_period(
    client, digits, make_caller, digit_rows, settings, django_capture_on_commit_callbacks
):
    caller = make_caller()
    job_id = submit(client, caller, digit_rows[:500].tolist())
    folder = Path(settings.JOBS_DIR) / job_id
    assert (folder / "input.npy").exists()
    with django_capture_on_commit_callbacks(execute=True):  # files go once the final state commits
        assert batch_job_execute(job_id=job_id, worker="w1") == ExecutionOutcome.FINISHED
    assert not (folder / "input.npy").exists()
    assert (folder / "probabilities.npy").exists()
    body = client.get(f"/v1/jobs/{job_id}", **caller.headers).json()
    finished = datetime.fromisoformat(body["finished_at"])
    assert datetime.fromisoformat(body["expires_at"]) == finished + timedelta(days=7)
    assert body["results_expired"] is False and len(body["results"]) == 500
    # Not yet: the beat task keeps results until expires_at.
    assert batch_jobs_expire(now=finished + timedelta(days=6)) == 0
    assert client.get(f"/v1/jobs/{job_id}/results", **caller.headers).status_code == 200
    assert batch_jobs_expire(now=finished + timedelta(days=7, seconds=1)) == 1
    assert not folder.exists()
    body = client.get(f"/v1/jobs/{job_id}", **caller.headers).json()
    assert body["status"] == "succeeded" and body["results_expired"] is True
    assert "results" not in body and "results_url" not in body
    assert_problem(client.get(f"/v1/jobs/{job_id}/results", **caller.headers), 410, "job_results_expired")


def test_a_cancelled_or_failed_job_keeps_nothing(
    client, digits, make_caller, digit_rows, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from jobs import services

    caller = make_caller()
    cancelled = submit(client, caller, digit_rows[:10].tolist())
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/v1/jobs/{cancelled}", **caller.headers).json()["status"] == "cancelled"
    assert not (Path(settings.JOBS_DIR) / cancelled).exists()
    failed = submit(client, caller, digit_rows[:10].tolist())

    def broken(**kwargs):
        raise ValueError("model exploded")

    monkeypatch.setattr(services, "model_predict", broken)
    with django_capture_on_commit_callbacks(execute=True):
        assert batch_job_execute(job_id=failed, worker="w1") == ExecutionOutcome.FINISHED
    job = BatchJob.objects.get(id=failed)
    assert job.status == "failed" and job.error_code == "job_failed" and job.expires_at is None
    assert not (Path(settings.JOBS_DIR) / failed).exists()


def test_the_expiry_task_is_scheduled(settings):
    schedule = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert batch_jobs_expire_task.name in schedule
