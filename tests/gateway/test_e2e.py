"""End to end against real processes: gunicorn workers, a Celery worker, the real broker.

These run on both CI legs: PostgreSQL + Redis (Redis broker, Redis quotas) and
the embedded default (SQLite, filesystem broker, database quotas).
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
import requests
from django.db.models import Sum

from audit.models import AuditEvent
from jobs.models import BatchJob
from tests.support import assert_problem, celery_worker, gateway_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded, pytest.mark.e2e]


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    """The shared server environment (tests/gateway/conftest.py), with short leases for worker-death tests."""
    return {**env, "JOB_LEASE_SECONDS": "3"}


@pytest.fixture
def server(env, digits):
    with gateway_server(workers=2, **env) as base:
        yield base


def test_rest_predict_against_a_real_server(server, make_caller, digit_rows):
    caller = make_caller()
    response = requests.post(
        f"{server}/v1/models/digits/predict",
        headers=caller.http_headers,
        json={"instances": digit_rows[:4].tolist(), "purpose": "research"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert [p["label"] for p in response.json()["predictions"]] == [0, 1, 2, 3]
    assert AuditEvent.objects.filter(request_id=response.headers["X-Request-ID"], http_status=200).count() == 1
    assert_problem(
        requests.get(f"{server}/v1/models/digits/predict", headers=caller.http_headers, timeout=10),
        405,
        "method_not_allowed",
    )


def test_v2_infer_through_the_standard_triton_client(server, make_caller, digit_rows):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    caller = make_caller()
    client = httpclient.InferenceServerClient(url=server.removeprefix("http://"))
    assert client.is_server_live()
    metadata = client.get_model_metadata("digits", headers=caller.http_headers)
    assert metadata["inputs"][0]["name"] == "pixels"
    assert client.is_model_ready("digits", headers=caller.http_headers)
    for binary in (True, False):
        tensor = httpclient.InferInput("pixels", [3, 64], "FP32")
        tensor.set_data_from_numpy(digit_rows[:3], binary_data=binary)
        outputs = [
            httpclient.InferRequestedOutput("probabilities", binary_data=binary),
            httpclient.InferRequestedOutput("label", binary_data=binary),
        ]
        result = client.infer(
            "digits", [tensor], outputs=outputs, headers=caller.http_headers, parameters={"purpose": "research"}
        )
        assert result.as_numpy("probabilities").shape == (3, 10)
        assert result.as_numpy("label").tolist() == [0, 1, 2]
    # default request: no outputs named, binary everything
    tensor = httpclient.InferInput("pixels", [1, 64], "FP32")
    tensor.set_data_from_numpy(digit_rows[:1])
    assert client.infer("digits", [tensor], headers=caller.http_headers).as_numpy("label").tolist() == [0]
    with pytest.raises(InferenceServerException, match="API key"):
        client.infer("digits", [tensor])
    client.close()


def _predict_once(args: tuple[str, str, list[float]]) -> tuple[int, str, str | None]:
    url, key, row = args
    response = requests.post(
        url, headers={"Authorization": f"Bearer {key}"}, json={"instances": [row], "purpose": "research"}, timeout=60
    )
    code = response.json().get("code", "") if response.status_code != 200 else ""
    return response.status_code, code, response.headers.get("Retry-After")


def _burst(args: tuple[str, str, list[float], int]) -> list[tuple[int, str, str | None]]:
    url, key, row, count = args
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(_predict_once, [(url, key, row)] * count))


def test_daily_quota_is_exact_under_concurrency_across_processes(server, make_caller, digit_rows):
    tenant_a = make_caller(daily_instances=50)
    tenant_b = make_caller(daily_instances=1000)
    url = f"{server}/v1/models/digits/predict"
    row = digit_rows[0].tolist()
    jobs = [(url, tenant_a.key, row, 50)] * 4 + [(url, tenant_b.key, row, 20)]
    with ProcessPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(_burst, jobs))
    a_results = [r for batch in results[:4] for r in batch]
    b_results = results[4]
    assert len(a_results) == 200
    admitted = [r for r in a_results if r[0] == 200]
    refused = [r for r in a_results if r[0] != 200]
    assert len(admitted) == 50
    assert all(status == 429 and code == "quota_exceeded" and retry for status, code, retry in refused)
    stored = AuditEvent.objects.filter(tenant_slug=tenant_a.tenant.slug).aggregate(s=Sum("units"))["s"]
    assert stored == 50
    assert all(status == 200 for status, _, _ in b_results)


def _wait_for(predicate, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not met in time")


def test_job_of_ten_thousand_instances_on_a_real_worker(server, env, make_caller, digit_rows):
    caller = make_caller()
    instances = np.resize(digit_rows, (10_000, 64)).tolist()
    with celery_worker(**env):
        submitted = requests.post(
            f"{server}/v1/jobs",
            headers={**caller.http_headers, "Idempotency-Key": "big-1"},
            json={"model": "digits", "purpose": "research", "instances": instances},
            timeout=60,
        )
        assert submitted.status_code == 202, submitted.text
        location = server + submitted.headers["Location"]
        again = requests.post(
            f"{server}/v1/jobs",
            headers={**caller.http_headers, "Idempotency-Key": "big-1"},
            json={"model": "digits", "purpose": "research", "instances": instances},
            timeout=60,
        )
        assert again.json()["id"] == submitted.json()["id"]
        progress: list[int] = []

        def finished():
            body = requests.get(location, headers=caller.http_headers, timeout=10).json()
            progress.append(body["progress"]["done"])
            return body if body["status"] in ("succeeded", "failed", "cancelled") else None

        job = _wait_for(finished, timeout=120, interval=0.05)
    assert job["status"] == "succeeded" and job["progress"] == {"done": 10_000, "total": 10_000}
    assert progress == sorted(progress)
    lines = requests.get(server + job["results_url"], headers=caller.http_headers, timeout=60).text.splitlines()
    assert len(lines) == 10_000
    assert BatchJob.objects.count() == 1
    assert AuditEvent.objects.filter(action="job.chunk", detail__job_id=job["id"]).count() == 20


def _big_job(server: str, caller, digit_rows, n: int = 100_000) -> str:
    instances = np.resize(digit_rows, (n, 64))
    import io

    buffer = io.BytesIO()
    np.save(buffer, instances)
    response = requests.post(
        f"{server}/v1/jobs",
        headers=caller.http_headers,
        timeout=120,
        data={"model": "digits", "purpose": "research"},
        files={"file": ("batch.npy", buffer.getvalue())},
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_cancelling_a_running_job_stops_it_and_refunds_the_rest(server, env, make_caller, digit_rows):
    caller = make_caller()
    job_id = _big_job(server, caller, digit_rows)
    with celery_worker(**env):
        _wait_for(lambda: BatchJob.objects.get(id=job_id).done > 0, timeout=60, interval=0.02)
        response = requests.delete(f"{server}/v1/jobs/{job_id}", headers=caller.http_headers, timeout=10)
        assert response.status_code == 200
        _wait_for(lambda: BatchJob.objects.get(id=job_id).status == "cancelled", timeout=60)
    job = BatchJob.objects.get(id=job_id)
    assert job.done < job.total and job.units_refunded == job.total - job.done
    assert AuditEvent.objects.filter(tenant_slug=caller.tenant.slug).aggregate(s=Sum("units"))["s"] == job.done


def test_a_worker_killed_mid_job_is_resumed_and_completes_exactly_once(server, env, make_caller, digit_rows):
    from jobs.services import batch_jobs_recover

    caller = make_caller()
    job_id = _big_job(server, caller, digit_rows)
    with celery_worker(**env) as worker:
        _wait_for(lambda: BatchJob.objects.get(id=job_id).done > 0, timeout=60, interval=0.02)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    stopped_at = BatchJob.objects.get(id=job_id)
    assert stopped_at.status == "running" and stopped_at.done < stopped_at.total
    with celery_worker(**env):
        # the lease (3 s here) must expire before another worker may take the job over
        _wait_for(lambda: batch_jobs_recover(stale_after_seconds=3) > 0, timeout=30, interval=0.5)
        _wait_for(lambda: BatchJob.objects.get(id=job_id).status == "succeeded", timeout=120, interval=0.2)
    job = BatchJob.objects.get(id=job_id)
    assert job.done == job.total and job.completions == 1 and job.attempts >= 2
    assert AuditEvent.objects.filter(action="job.succeeded", detail__job_id=job_id).count() == 1
    probabilities = np.load(os.path.join(env["JOBS_DIR"], job_id, "probabilities.npy"))
    assert probabilities.shape == (job.total, 10) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_policy_change_while_requests_flow_records_the_deciding_version(server, make_caller, digit_rows):
    from threading import Event, Thread

    from policy.services import policy_create, policy_update

    caller = make_caller(slug="flow")
    allow = [{"id": "digits-only", "type": "model_access", "mode": "enforce", "params": {"models": ["digits"]}}]
    deny = [{"id": "no-digits", "type": "model_access", "mode": "enforce", "params": {"deny_models": ["digits"]}}]
    policy = policy_create(
        name="tenant:flow",
        scope="tenant",
        tenant_slug="flow",
        document=allow,
        actor="staff:test",
        reason="allow digits",
    )
    answers: list[tuple[int, str, str]] = []
    stop = Event()

    def flow() -> None:
        session = requests.Session()
        while not stop.is_set():
            response = session.post(
                f"{server}/v1/models/digits/predict",
                headers=caller.http_headers,
                json={"instances": digit_rows[:1].tolist(), "purpose": "research"},
                timeout=30,
            )
            code = response.json().get("code", "") if response.status_code != 200 else ""
            answers.append((response.status_code, code, response.headers["X-Request-ID"]))

    threads = [Thread(target=flow) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        _wait_for(lambda: len(answers) >= 10, timeout=30, interval=0.05)
        policy_update(policy=policy, document=deny, actor="staff:test", reason="incident: stop digits")
        time.sleep(2.5)  # the cross-process invalidation bound is about one second
        seen = len(answers)
        _wait_for(lambda: len(answers) >= seen + 20, timeout=60, interval=0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    statuses = {status for status, _, _ in answers}
    # deny_models hides the model from this tenant: it answers like a missing one (no existence oracle).
    assert statuses == {200, 404}, statuses
    for status, code, request_id in answers:
        event = AuditEvent.objects.get(request_id=request_id, event_type="request")
        # the version recorded is the one that decided: v1 allowed, v2 denied
        if status == 200:
            assert "tenant:flow@1" in event.policy_versions.split(","), event.policy_versions
            assert event.decision == "allow"
        else:
            assert code == "model_not_found"
            assert "tenant:flow@2" in event.policy_versions.split(","), event.policy_versions
            assert event.decision == "deny" and event.rule_id.endswith("no-digits")
    # within the invalidation bound every process has switched: the last answers are all denials
    assert all(status == 404 for status, _, _ in answers[-10:])
