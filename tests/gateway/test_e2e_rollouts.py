"""Hot activation with no dropped request: steady traffic through real gunicorn workers while versions switch.

A canary is started, promoted, and the promotion rolled back while four
client threads keep calling; no request may fail, and every answer must name
a version that was serving at that moment (within the invalidation interval
that every process needs to see a change).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
import requests

from audit.models import AuditEvent
from inference.models import ModelVersion
from inference.routing import ARM_CANARY, RolloutPlan, canary_buckets, rollout_arm
from inference.services import model_version_activate, model_version_register
from inference.services.rollouts import rollout_promote, rollout_rollback, rollout_start
from tests import onnx_models
from tests.support import gateway_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded, pytest.mark.e2e]

#: The servers check for changes every 0.5 s (INVALIDATION_CHECK_SECONDS); allow that and a request in flight.
CHECK_SECONDS = 0.5
SETTLE = 1.1
PHASE = 2.0
ROW = [[5.1, 3.5, 1.4, 0.2]]


@dataclass
class Answer:
    key: str
    sent: float
    done: float
    status: int
    version: int | None
    request_id: str


def test_canary_promote_and_rollback_under_load_drop_no_request(env, make_caller, model_store):
    data, labels = onnx_models.classifier(), onnx_models.IRIS_LABELS
    v1 = model_version_register(name="iris", data=data, actor="test", labels=labels, value_max=10.0)
    model_version_activate(version=v1, actor="test")
    model_version_register(name="iris", data=data, actor="test", labels=labels, value_max=10.0)
    callers = [make_caller() for _ in range(16)]
    answers: list[Answer] = []
    stop = threading.Event()

    def traffic(mine: list) -> None:
        session = requests.Session()
        while not stop.is_set():
            for caller in mine:
                sent = time.monotonic()
                response = session.post(
                    f"{base}/v1/models/iris/predict",
                    headers=caller.http_headers,
                    json={"instances": ROW, "purpose": "research"},
                    timeout=30,
                )
                body = response.json() if response.status_code == 200 else {}
                answers.append(
                    Answer(
                        caller.prefix,
                        sent,
                        time.monotonic(),
                        response.status_code,
                        body.get("version"),
                        response.headers.get("X-Request-ID", ""),
                    )
                )

    with gateway_server(workers=2, **env, INVALIDATION_CHECK_SECONDS=str(CHECK_SECONDS)) as base:
        threads = [threading.Thread(target=traffic, args=(callers[i::4],)) for i in range(4)]
        for thread in threads:
            thread.start()
        try:
            # Warm: every key answered once (first lookups, quota counters, sessions), then v1 alone.
            deadline = time.monotonic() + 60
            while len({a.key for a in answers}) < len(callers) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(PHASE / 2)
            rollout = rollout_start(name="iris", version=2, actor="test", canary_percent=50)
            started = time.monotonic()
            time.sleep(PHASE)
            rollout_promote(name="iris", actor="test", reason="under load")
            promoted = time.monotonic()
            time.sleep(PHASE)
            rollout_rollback(name="iris", actor="test", reason="under load")
            rolled_back = time.monotonic()
            time.sleep(PHASE)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)

    assert answers and all(a.status == 200 for a in answers), [a for a in answers if a.status != 200][:5]
    plan = RolloutPlan(rollout.pk, "iris", 2, canary_buckets(50), ())
    on_canary = {c.prefix for c in callers if rollout_arm(plan=plan, key_prefix=c.prefix) == ARM_CANARY}
    assert 0 < len(on_canary) < len(callers)
    phases = {"before": 0, "canary": 0, "promoted": 0, "rolled back": 0}
    for answer in answers:
        if answer.done < started:
            expected, phase = {1}, "before"
        elif started + SETTLE <= answer.sent and answer.done < promoted:
            # Sticky: a canary key gets v2 (v1 only while its worker is still loading v2), the others v1.
            expected, phase = ({2, 1} if answer.key in on_canary else {1}), "canary"
        elif promoted + SETTLE <= answer.sent and answer.done < rolled_back:
            expected, phase = {2}, "promoted"
        elif rolled_back + SETTLE <= answer.sent:
            expected, phase = {1}, "rolled back"
        else:
            expected, phase = {1, 2}, ""  # a switch in progress: either version was serving
        assert answer.version in expected, (phase, answer)
        if phase:
            phases[phase] += 1
    assert all(count >= 10 for count in phases.values()), phases
    canary_answers = [a for a in answers if started + SETTLE <= a.sent and a.done < promoted and a.key in on_canary]
    assert sum(a.version == 2 for a in canary_answers) >= len(canary_answers) * 0.8
    # Every answer is in the audit trail, naming the version that answered it.
    audited = dict(
        AuditEvent.objects.filter(action="models.predict", model_name="iris").values_list("request_id", "model_version")
    )
    assert all(audited[a.request_id] == a.version for a in answers)
    assert ModelVersion.objects.get(name="iris", status="active").version == 1
