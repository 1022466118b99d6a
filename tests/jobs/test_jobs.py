"""Batch jobs: acceptance through the pipeline, execution logic, idempotency, cancellation, isolation.

The task's logic runs inline here (eager Celery); test_e2e runs the same path on
a real worker process and broker.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from audit.models import AuditEvent
from core.invalidation import clock
from inference.services import model_version_activate, model_version_register, model_version_retire
from jobs.models import BatchJob
from jobs.services import ExecutionOutcome, batch_job_execute
from tests.support import assert_problem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture(autouse=True)
def _jobs_dir(settings, tmp_path):
    settings.JOBS_DIR = str(tmp_path / "jobs")
    settings.JOB_CHUNK_SIZE = 300


def submit(client, caller, rows, key=None, **extra):
    headers = dict(caller.headers)
    if key:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    body = {"model": "digits", "instances": rows, "purpose": "research", **extra}
    return client.post("/v1/jobs", data=json.dumps(body), content_type="application/json", **headers)


def test_job_runs_to_completion_with_progress_audit_and_results(
    client, digits, make_caller, digit_rows, celery_eager, django_capture_on_commit_callbacks, onnx_bytes
):
    caller = make_caller()
    rows = digit_rows[:1000].tolist()
    with django_capture_on_commit_callbacks(execute=True):
        accepted = submit(client, caller, rows)
    assert accepted.status_code == 202, accepted.content
    job_id = accepted.json()["id"]
    assert accepted["Location"] == f"/v1/jobs/{job_id}"
    job = client.get(f"/v1/jobs/{job_id}", **caller.headers).json()
    assert job["status"] == "succeeded" and job["progress"] == {"done": 1000, "total": 1000}
    assert len(job["results"]) == 1000
    assert [r["label"] for r in job["results"][:3]] == [0, 1, 2]
    lines = b"".join(client.get(job["results_url"], **caller.headers).streaming_content).splitlines()
    assert len(lines) == 1000 and json.loads(lines[5])["index"] == 5
    chunks = AuditEvent.objects.filter(action="job.chunk", detail__job_id=job_id)
    assert chunks.count() == 4  # 300 + 300 + 300 + 100
    assert AuditEvent.objects.filter(action="job.succeeded", detail__job_id=job_id).count() == 1
    accept_event = AuditEvent.objects.get(request_id=accepted["X-Request-ID"], event_type="request")
    assert accept_event.units == 1000 and accept_event.http_status == 202
    # Finished results outlive the model version that produced them.
    successor = model_version_register(name="digits", data=onnx_bytes, actor="test")
    model_version_activate(version=successor, actor="test")
    model_version_retire(version=digits, actor="test")
    clock.reset()  # as any other process would, once it sees the registry change
    after = client.get(f"/v1/jobs/{job_id}", **caller.headers)
    assert after.status_code == 200 and [r["label"] for r in after.json()["results"][:3]] == [0, 1, 2]


def test_npy_and_csv_uploads(client, digits, make_caller, digit_rows, settings):
    caller = make_caller()
    buffer = io.BytesIO()
    np.save(buffer, digit_rows[:10])
    buffer.seek(0)
    buffer.name = "batch.npy"
    response = client.post(
        "/v1/jobs", data={"model": "digits", "purpose": "research", "file": buffer}, **caller.headers
    )
    assert response.status_code == 202, response.content
    assert response.json()["progress"]["total"] == 10
    csv = io.BytesIO("\n".join(",".join(str(v) for v in row) for row in digit_rows[:4]).encode())
    csv.name = "batch.csv"
    response = client.post("/v1/jobs", data={"model": "digits", "purpose": "research", "file": csv}, **caller.headers)
    assert response.status_code == 202 and response.json()["progress"]["total"] == 4
    for name, payload in (("bad.csv", b"not,numbers\nat,all"), ("empty.npy", b""), ("x.txt", b"1,2")):
        bad = io.BytesIO(payload)
        bad.name = name
        response = client.post("/v1/jobs", data={"model": "digits", "file": bad}, **caller.headers)
        assert_problem(response, 400, "invalid_input")


def test_idempotent_resubmission_returns_the_same_job(client, digits, make_caller, digit_rows):
    caller = make_caller(daily_instances=100)
    first = submit(client, caller, digit_rows[:50].tolist(), key="abc-1")
    again = submit(client, caller, digit_rows[:50].tolist(), key="abc-1")
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] and again["Idempotent-Replayed"] == "true"
    assert BatchJob.objects.count() == 1
    # the replay consumed nothing: 50 more instances still fit the daily 100
    assert submit(client, caller, digit_rows[:50].tolist(), key="abc-2").status_code == 202
    assert_problem(submit(client, caller, digit_rows[:7].tolist(), key="abc-1"), 409, "idempotency_key_reused")


def test_a_concurrent_duplicate_that_loses_the_insert_is_answered_as_a_replay(
    client, digits, make_caller, digit_rows, monkeypatch, settings
):
    """Two submissions with one Idempotency-Key both miss the lookup; the second INSERT collides."""
    from pathlib import Path

    from gateway.api import jobs as apis

    caller = make_caller(daily_instances=100)
    first = submit(client, caller, digit_rows[:50].tolist(), key="race-1")
    assert first.status_code == 202
    # As if the first submission had not committed yet when this one looked its key up.
    monkeypatch.setattr(apis, "batch_job_find_idempotent", lambda **kwargs: None)
    again = submit(client, caller, digit_rows[:50].tolist(), key="race-1")
    assert again.status_code == 202, again.content
    assert again.json()["id"] == first.json()["id"] and again["Idempotent-Replayed"] == "true"
    assert again["Location"] == f"/v1/jobs/{first.json()['id']}"
    assert BatchJob.objects.count() == 1
    # the loser's stored input is gone with its row
    assert [p.name for p in Path(settings.JOBS_DIR).iterdir()] == [first.json()["id"]]
    event = AuditEvent.objects.get(request_id=again["X-Request-ID"], event_type="request")
    assert event.http_status == 202 and event.units == 0 and event.detail["idempotent_replay"] is True
    # the same key with another body still collides, and is still a 409
    assert_problem(submit(client, caller, digit_rows[:7].tolist(), key="race-1"), 409, "idempotency_key_reused")
    monkeypatch.undo()
    # what the losers reserved was given back: 50 more instances still fit the daily 100
    assert submit(client, caller, digit_rows[:50].tolist(), key="race-2").status_code == 202


def test_cancelling_a_queued_job_refunds_its_quota(client, digits, make_caller, digit_rows):
    caller = make_caller(daily_instances=100)
    job_id = submit(client, caller, digit_rows[:100].tolist()).json()["id"]
    assert_problem(submit(client, caller, digit_rows[:1].tolist()), 429, "quota_exceeded")
    cancelled = client.delete(f"/v1/jobs/{job_id}", **caller.headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["units_refunded"] == 100
    assert submit(client, caller, digit_rows[:100].tolist()).status_code == 202
    final = AuditEvent.objects.get(action="job.cancelled", detail__job_id=job_id)
    assert final.units == -100


def test_another_tenants_job_is_404(client, digits, make_caller, digit_rows):
    owner, other = make_caller(), make_caller()
    job_id = submit(client, owner, digit_rows[:5].tolist()).json()["id"]
    assert_problem(client.get(f"/v1/jobs/{job_id}", **other.headers), 404, "job_not_found")
    assert_problem(client.delete(f"/v1/jobs/{job_id}", **other.headers), 404, "job_not_found")
    assert_problem(client.get(f"/v1/jobs/{job_id}/results", **other.headers), 404, "job_not_found")
    assert_problem(client.get("/v1/jobs/not-a-uuid", **other.headers), 404, "job_not_found")
    assert client.get("/v1/jobs", **other.headers).json()["jobs"] == []


def test_results_answer_the_media_type_they_document(client, digits, make_caller, digit_rows):
    caller = make_caller()
    ndjson = {"HTTP_ACCEPT": "application/x-ndjson", **caller.headers}
    job_id = submit(client, caller, digit_rows[:3].tolist()).json()["id"]
    # errors are still problem documents (DRF no longer refuses the Accept with an unaudited 406)
    not_yet = client.get(f"/v1/jobs/{job_id}/results", **ndjson)
    assert_problem(not_yet, 400, "invalid_input")
    assert AuditEvent.objects.get(request_id=not_yet["X-Request-ID"]).http_status == 400
    assert batch_job_execute(job_id=job_id, worker="w1") == ExecutionOutcome.FINISHED
    response = client.get(f"/v1/jobs/{job_id}/results", **ndjson)
    assert response.status_code == 200 and response["Content-Type"] == "application/x-ndjson"
    lines = b"".join(response.streaming_content).splitlines()
    assert [json.loads(line)["label"] for line in lines] == [0, 1, 2]
    # the other job views answer JSON whatever the Accept says, as v1 does
    assert client.get(f"/v1/jobs/{job_id}", **ndjson).json()["status"] == "succeeded"
    assert client.get("/v1/jobs", **ndjson).status_code == 200


def test_a_deeply_nested_or_badly_sized_json_submission_is_400(client, digits, make_caller):
    caller = make_caller()
    for declared in (None, "²"):
        extra = {"CONTENT_LENGTH": declared} if declared else {}
        response = client.post(
            "/v1/jobs", data="[" * 100000, content_type="application/json", **caller.headers, **extra
        )
        assert_problem(response, 400, "malformed_request")
    assert BatchJob.objects.count() == 0


def test_concurrent_job_limit(client, digits, make_caller, digit_rows):
    caller = make_caller(max_concurrent_jobs=1)
    assert submit(client, caller, digit_rows[:5].tolist()).status_code == 202
    assert_problem(submit(client, caller, digit_rows[:5].tolist()), 429, "too_many_jobs")


@pytest.mark.django_db(transaction=True)
def test_concurrent_submissions_cannot_both_pass_the_job_limit(digits, make_caller, digit_rows, monkeypatch):
    """Both submissions count before either inserts unless the tenant is locked: only one may win."""
    import contextlib
    import threading

    from django.db import connections
    from django.test import Client

    from jobs import services

    caller = make_caller(max_concurrent_jobs=1)
    counted = threading.Barrier(2, timeout=1.0)
    real_count = services.batch_job_active_count

    def count_then_wait(**kwargs):
        value = real_count(**kwargs)
        # Without the lock both threads meet here with a count of 0; with it the other
        # submission is blocked behind ours, the wait times out and we go on alone.
        with contextlib.suppress(threading.BrokenBarrierError):
            counted.wait()
        return value

    monkeypatch.setattr(services, "batch_job_active_count", count_then_wait)
    statuses: list[int] = []

    def post() -> None:
        try:
            statuses.append(submit(Client(), caller, digit_rows[:5].tolist()).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [202, 429]
    assert BatchJob.objects.count() == 1


def test_job_scope_and_size_limits(client, digits, make_caller, digit_rows):
    no_scope = make_caller(scopes=["predict"])
    assert_problem(submit(client, no_scope, digit_rows[:5].tolist()), 403, "insufficient_scope")
    small = make_caller(max_job_instances=10)
    assert_problem(submit(client, small, digit_rows[:11].tolist()), 400, "batch_too_large")
    assert_problem(submit(client, small, [[1.0] * 3]), 400, "invalid_input")


def test_execution_is_idempotent_and_completes_exactly_once(client, digits, make_caller, digit_rows):
    caller = make_caller()
    job_id = submit(client, caller, digit_rows[:700].tolist()).json()["id"]
    assert batch_job_execute(job_id=job_id, worker="w1") == ExecutionOutcome.FINISHED
    assert batch_job_execute(job_id=job_id, worker="w2") == ExecutionOutcome.ALREADY_FINISHED
    job = BatchJob.objects.get(id=job_id)
    assert job.status == "succeeded" and job.completions == 1 and job.done == 700
    # Post-market monitoring counted every instance once (three chunks), flushed when the job ended.
    from monitoring.models import LiveWindow

    window = LiveWindow.objects.get(model_version=digits)
    assert (window.instances, window.requests, sum(window.prediction_counts)) == (700, 1, 700)


def test_a_live_lease_keeps_a_second_worker_out_and_an_expired_one_is_resumed(client, digits, make_caller, digit_rows):
    from datetime import timedelta

    from django.utils import timezone

    caller = make_caller()
    job_id = submit(client, caller, digit_rows[:900].tolist()).json()["id"]
    # worker w1 "died" after two chunks, holding a live lease
    BatchJob.objects.filter(id=job_id).update(
        status="running", lease_owner="w1", done=600, lease_expires_at=timezone.now() + timedelta(seconds=30)
    )
    assert batch_job_execute(job_id=job_id, worker="w2") == ExecutionOutcome.LEASED_ELSEWHERE
    BatchJob.objects.filter(id=job_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert batch_job_execute(job_id=job_id, worker="w2") == ExecutionOutcome.FINISHED
    job = BatchJob.objects.get(id=job_id)
    assert job.done == 900 and job.completions == 1
    # only the remaining chunk ran on w2
    assert AuditEvent.objects.filter(action="job.chunk", detail__job_id=job_id).count() == 1


def test_a_broker_outage_leaves_the_accepted_job_queued_for_recovery(
    client, digits, make_caller, digit_rows, monkeypatch, django_capture_on_commit_callbacks
):
    from kombu.exceptions import OperationalError

    from jobs import tasks
    from jobs.services import batch_jobs_recover

    def broker_down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(tasks.batch_job_run, "delay", broker_down)
    caller = make_caller()
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(client, caller, digit_rows[:5].tolist())
    assert response.status_code == 202
    job = BatchJob.objects.get(id=response.json()["id"])
    assert job.status == "queued"
    sent: list[str] = []
    monkeypatch.setattr(tasks.batch_job_run, "delay", lambda job_id: sent.append(job_id))
    assert batch_jobs_recover(stale_after_seconds=0) == 1
    assert sent == [str(job.id)]
