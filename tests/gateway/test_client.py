"""``gateway.client.MaaSClient`` against a real server and worker, and its retry logic against a stub.

The retry tests use a tiny ``http.server`` stub on loopback that answers from
a script (503 with ``Retry-After: 0``, then 200...), so what is retried, how
often and when the client gives up is deterministic.  The rate-limit and
quota tests use the real server: a tenant at 0.5 requests/s is refused, the
client waits the ``Retry-After`` it is told and succeeds; a daily quota whose
``Retry-After`` (hours) exceeds ``max_retry_wait`` is raised at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from audit.models import AuditEvent
from gateway.client import (
    AuthenticationError,
    InvalidRequestError,
    MaaSClient,
    MaaSError,
    NotFoundError,
    PermissionDeniedError,
    PolicyDeniedError,
    RateLimitedError,
    UnavailableError,
)
from tests.support import celery_worker, gateway_server


# --- the real server (``env`` is tests/gateway/conftest.py's) ----------------------------------------
@pytest.fixture
def server(settings, env, digits):
    if settings.REDIS_URL:
        # Quota counters are keyed by tenant id, and a fresh test database hands out the same ids
        # again: counters left in Redis by an earlier session would be charged to these tenants.
        from core.redis import redis_client

        redis_client().flushdb()
    with gateway_server(workers=2, **env) as base:
        yield base


def _raises_eventually(call: Any, error: type[MaaSError], timeout: float = 10.0) -> MaaSError:
    """Call until ``error`` is raised: kill switches reach every server process within about a second."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            call()
        except error as exc:
            return exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{error.__name__} was never raised")
        time.sleep(0.2)


@pytest.mark.django_db(transaction=True)
@pytest.mark.embedded
@pytest.mark.e2e
def test_models_predictions_usage_and_typed_errors(server, make_caller, digit_rows):
    from policy.services import kill_switch_engage

    caller = make_caller()
    client = MaaSClient(server, caller.key)

    models = client.list_models()
    assert [m["name"] for m in models] == ["digits"]
    assert models[0]["version"] == 1 and len(models[0]["labels"]) == 10
    detail = client.get_model("digits")
    assert "model_card" in detail and detail["signature"]["inputs"][0]["name"] == "pixels"

    result = client.predict("digits", digit_rows[:3], purpose="research")
    assert [p["label"] for p in result["predictions"]] == [0, 1, 2]
    assert result["model"] == "digits" and result["version"] == 1 and result["request_id"]
    assert len(client.predict("digits", digit_rows[3:4], purpose="research", version=1)["predictions"]) == 1

    usage = client.usage()
    assert usage["tenant"] == caller.tenant.slug and usage["totals"]["instances"] == 4

    with pytest.raises(NotFoundError) as missing:
        client.get_model("no-such-model")
    assert (missing.value.status, missing.value.code) == (404, "model_not_found") and missing.value.request_id
    with pytest.raises(NotFoundError) as missing:
        client.predict("no-such-model", digit_rows[:1])
    assert missing.value.code == "model_not_found"
    with pytest.raises(InvalidRequestError) as too_narrow:
        client.predict("digits", [[1.0, 2.0]], purpose="research")
    assert (too_narrow.value.status, too_narrow.value.code) == (400, "invalid_input")

    with pytest.raises(AuthenticationError) as intruder:
        MaaSClient(server, "maas_notakey.secret").list_models()  # a key is sent: a wrong one, not none
    assert intruder.value.status == 401 and intruder.value.code == "invalid_api_key"

    kill_switch_engage(target_type="model", target="digits", reason="client test", actor="staff:test")
    denied = _raises_eventually(lambda: client.predict("digits", digit_rows[:1], purpose="research"), PolicyDeniedError)
    assert isinstance(denied, PermissionDeniedError)
    assert (denied.status, denied.code) == (403, "policy_denied") and denied.body["rule_id"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.embedded
@pytest.mark.e2e
def test_a_job_is_submitted_once_and_waited_for_with_a_progress_bar(server, env, make_caller, digit_rows, capsys):
    caller = make_caller()
    client = MaaSClient(server, caller.key)
    instances = np.resize(digit_rows, (2000, 64))
    with celery_worker(**env):
        job = client.submit_job("digits", instances, purpose="research", idempotency_key="client-job-1")
        assert job["status"] in ("queued", "running") and job["progress"]["total"] == 2000
        again = client.submit_job("digits", instances, purpose="research", idempotency_key="client-job-1")
        assert again["id"] == job["id"]
        done = client.wait_job(job["id"], progress=True, poll=0.1, timeout=120)
    assert done["status"] == "succeeded" and done["progress"] == {"done": 2000, "total": 2000}
    assert done["results_url"] == f"/v1/jobs/{job['id']}/results"
    bar = capsys.readouterr().err
    assert bar.startswith("\r[") and bar.endswith("\n")
    assert "[##############################] 2000/2000 succeeded" in bar


@pytest.mark.django_db(transaction=True)
@pytest.mark.embedded
@pytest.mark.e2e
def test_a_rate_limited_prediction_is_retried_after_retry_after(server, make_caller, digit_rows):
    caller = make_caller(rate_per_second=0.5, burst=1)
    row = digit_rows[:1]
    impatient = MaaSClient(server, caller.key, max_retries=0)
    impatient.predict("digits", row, purpose="research")
    with pytest.raises(RateLimitedError) as refused:
        impatient.predict("digits", row, purpose="research")
    assert (refused.value.status, refused.value.code) == (429, "rate_limited")

    patient = MaaSClient(server, caller.key, max_retries=3, max_retry_wait=5)
    assert patient.predict("digits", row, purpose="research")["predictions"][0]["label"] == 0
    events = AuditEvent.objects.filter(tenant_slug=caller.tenant.slug, action="models.predict")
    assert events.filter(http_status=200).count() == 2
    # The second client was refused at least once before it got through.
    assert events.filter(http_status=429, error_code="rate_limited").count() >= 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.embedded
@pytest.mark.e2e
def test_an_exhausted_quota_is_raised_at_once_when_its_retry_after_exceeds_max_retry_wait(
    server, make_caller, digit_rows
):
    caller = make_caller(daily_instances=1)
    client = MaaSClient(server, caller.key, max_retries=3, max_retry_wait=1)
    client.predict("digits", digit_rows[:1], purpose="research")
    with pytest.raises(RateLimitedError) as exhausted:
        client.predict("digits", digit_rows[:1], purpose="research")
    assert (exhausted.value.status, exhausted.value.code) == (429, "quota_exceeded")
    refusals = AuditEvent.objects.filter(tenant_slug=caller.tenant.slug, error_code="quota_exceeded")
    assert refusals.count() == 1  # asked once, not retried


# --- the scripted stub ---------------------------------------------------------------------------
@dataclass
class Answer:
    """One scripted HTTP answer."""

    status: int
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def problem(status: int, code: str, **headers: str) -> Answer:
    body = {"type": f"https://maas.example/problems/{code}", "title": code, "status": status,
            "detail": f"scripted {code}", "code": code, "request_id": "stub-request"}  # fmt: skip
    return Answer(status, body, {"Content-Type": "application/problem+json", "X-Request-ID": "stub-request", **headers})


@dataclass
class Stub:
    """What the stub answers (the last answer repeats) and what it was asked."""

    base_url: str
    script: list[Answer]
    seen: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)


@contextmanager
def stub_server(*script: Answer) -> Iterator[Stub]:
    """A loopback HTTP server answering ``script`` in order, for deterministic retry tests."""
    state = Stub(base_url="", script=list(script))

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            state.seen.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
            answer = state.script.pop(0) if len(state.script) > 1 else state.script[0]
            payload = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
            self.send_response(answer.status)
            headers = {"Content-Type": "application/json", **answer.headers, "Content-Length": str(len(payload))}
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads ``state.seen`` instead."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_503_is_retried_after_retry_after_until_it_succeeds():
    busy = problem(503, "audit_unavailable", **{"Retry-After": "0"})
    with stub_server(busy, busy, Answer(200, {"models": [{"name": "digits"}]})) as stub:
        client = MaaSClient(stub.base_url, "maas_stub.key", max_retries=3)
        assert client.list_models() == [{"name": "digits"}]
    assert [(method, path) for method, path, _, _ in stub.seen] == [("GET", "/v1/models")] * 3
    assert all(headers["Authorization"] == "Bearer maas_stub.key" for _, _, headers, _ in stub.seen)


def test_a_retried_post_is_sent_again_unchanged_and_an_http_date_retry_after_is_understood():
    past = format_datetime(datetime.now(UTC) - timedelta(minutes=5), usegmt=True)
    with stub_server(problem(429, "rate_limited", **{"Retry-After": past}), Answer(200, {"predictions": []})) as stub:
        client = MaaSClient(stub.base_url, "maas_stub.key")
        client.predict("digits", [[0.0] * 64], purpose="research")
    assert len(stub.seen) == 2 and stub.seen[0][3] == stub.seen[1][3]
    assert json.loads(stub.seen[0][3]) == {"instances": [[0.0] * 64], "purpose": "research"}


def test_retries_stop_after_max_retries_with_the_typed_error_and_its_code():
    with stub_server(problem(503, "audit_unavailable", **{"Retry-After": "0"})) as stub:
        client = MaaSClient(stub.base_url, "maas_stub.key", max_retries=2)
        with pytest.raises(UnavailableError) as error:
            client.usage()
    assert len(stub.seen) == 3  # the first try and two retries
    assert (error.value.status, error.value.code, error.value.request_id) == (503, "audit_unavailable", "stub-request")
    assert error.value.detail == "scripted audit_unavailable"


def test_a_retry_after_beyond_max_retry_wait_is_raised_without_waiting():
    with stub_server(problem(503, "database_unavailable", **{"Retry-After": "3600"})) as stub:
        client = MaaSClient(stub.base_url, "maas_stub.key", max_retries=5, max_retry_wait=30)
        with pytest.raises(UnavailableError) as error:
            client.list_models()
    assert error.value.code == "database_unavailable"
    assert len(stub.seen) == 1


@pytest.mark.parametrize(
    ("answer", "error", "code"),
    [
        (problem(400, "invalid_input"), InvalidRequestError, "invalid_input"),
        (problem(401, "api_key_expired"), AuthenticationError, "api_key_expired"),
        (problem(403, "insufficient_scope"), PermissionDeniedError, "insufficient_scope"),
        (problem(404, "job_not_found"), NotFoundError, "job_not_found"),
        (problem(413, "payload_too_large"), InvalidRequestError, "payload_too_large"),
        (Answer(502, b"<html>Bad gateway</html>", {"Content-Type": "text/html"}), UnavailableError, "error"),
    ],
    ids=["400", "401", "403", "404", "413", "502-html"],
)
def test_errors_are_typed_by_status_and_carry_the_problem_code(answer, error, code):
    with stub_server(answer) as stub, pytest.raises(error) as raised:
        MaaSClient(stub.base_url, "maas_stub.key").get_job("some-job")
    assert raised.value.code == code and raised.value.status == answer.status
    assert len(stub.seen) == 1  # only 429 and 503 are retried
    assert not isinstance(raised.value, PolicyDeniedError)


@pytest.mark.django_db(transaction=True)
@pytest.mark.embedded
@pytest.mark.e2e
def test_a_receipt_is_fetched_and_verified_with_nothing_but_the_public_key(
    settings, env, digits, make_caller, digit_rows, tmp_path
):
    import io

    import requests
    from django.core.management import call_command

    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path / "checkpoints")  # the server reads the log the sealer writes
    settings.AUDIT_SEAL_LAG_SECONDS = 0
    if settings.REDIS_URL:
        from core.redis import redis_client

        redis_client().flushdb()
    with gateway_server(workers=1, AUDIT_CHECKPOINT_DIR=settings.AUDIT_CHECKPOINT_DIR, **env) as base:
        caller = make_caller()
        client = MaaSClient(base, caller.key)
        result = client.predict("digits", digit_rows[:1], purpose="research")
        assert client.get_receipt(result["request_id"]) is None  # 202: not sealed yet
        call_command("seal_audit", stdout=io.StringIO())
        receipt = client.get_receipt(result["request_id"])
        public_key = requests.get(f"{base}/v1/audit/public-key", timeout=10).json()["public_key_pem"]
    assert MaaSClient.verify_receipt(receipt, public_key_pem=public_key).ok
    recorded = receipt["event"]
    assert recorded["request_id"] == result["request_id"] and recorded["decision"] == "allow"
    assert recorded["policy_versions"] == ",".join(result["decision"]["policy_versions"])
    receipt["event"]["prediction"][0]["label"] = 7
    assert not MaaSClient.verify_receipt(receipt, public_key_pem=public_key).ok
