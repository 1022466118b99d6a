"""Canary and shadow rollouts through the governed pipeline (Django's test client, no server).

A tiny iris classifier (tests/onnx_models.py) is ``iris`` v1 (stable); v2 is
the same graph (agrees with v1), v3 the same graph with its labels reversed
(disagrees on most rows).  Figures are counted from the audit trail, as the
rollout status and the automatic rollback count them.
"""

from __future__ import annotations

import json
import threading
from collections import Counter

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from audit.canonical import canonical_json
from audit.models import AuditEvent
from audit.selectors import ExportFilters, audit_public_key_info
from audit.services import audit_export_write, audit_seal, audit_verify
from audit.verify_export import verify_export
from core.invalidation import clock
from inference.errors import InvalidRollout, ModelIntegrityFailed, ModelVersionNotFound, RolloutConflict
from inference.models import ModelRollout, ModelVersion
from inference.routing import BUCKETS, ready_model, rollout_bucket, rollout_versions_warm
from inference.services import model_version_activate, model_version_register, model_version_retire
from inference.services.rollouts import (
    ROLLOUTS_EVALUATE_TASK,
    rollout_promote,
    rollout_rollback,
    rollout_start,
    rollouts_evaluate,
)
from inference.tasks import rollouts_evaluate_task
from policy.services import policy_create
from tenants.keyformat import key_compose, key_hash, key_prefix_generate, key_secret_generate
from tenants.models import ApiKey
from tests import onnx_models
from tests.support import assert_problem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.9, 3.1, 5.4, 2.1]]


@pytest.fixture
def iris(model_store):
    """``iris`` v1 active; v2 (same answers) and v3 (labels reversed) staged."""
    data = onnx_models.classifier()
    labels = onnx_models.IRIS_LABELS

    def register(labels: list[str]) -> ModelVersion:
        return model_version_register(name="iris", data=data, actor="test", labels=labels, value_max=10.0)

    v1 = model_version_activate(version=register(labels), actor="test")
    return {1: v1, 2: register(labels), 3: register(list(reversed(labels)))}


def predict(client, caller, body: dict | None = None, **headers):
    payload = {"instances": ROWS, "purpose": "research", **(body or {})}
    return client.post(
        "/v1/models/iris/predict",
        data=json.dumps(payload),
        content_type="application/json",
        **caller.headers,
        **headers,
    )


def start(version: int, **kwargs) -> ModelRollout:
    rollout = rollout_start(name="iris", version=version, actor="test", **kwargs)
    clock.reset()  # as if the invalidation interval had passed
    rollout_versions_warm(name="iris")  # the readiness gate: load the sessions in this process now
    return rollout


def canary_callers(make_caller, rollout: ModelRollout, *, want: bool, count: int = 1, **kwargs):
    """Callers whose sticky bucket puts them on (``want``) or off the canary of ``rollout``."""
    found = []
    while len(found) < count:
        caller = make_caller(**kwargs)
        on = rollout_bucket(rollout_id=rollout.pk, key_prefix=caller.prefix) < rollout.canary_percent * BUCKETS / 100
        if on == want:
            found.append(caller)
        kwargs.pop("slug", None)
    return found


def test_canary_share_is_sticky_and_counted_from_the_audit_trail(client, iris, make_caller, settings):
    """A canary at 20 % gets 20 % +- 5 % of 1,000 requests from 500 keys; each key keeps its version."""
    rollout = start(2, canary_percent=20)
    tenant = make_caller().tenant
    # 500 keys in one INSERT: issuing them one by one through the audited service costs seconds.
    pepper = settings.API_KEY_PEPPER
    prefixes = []
    rows = []
    for _ in range(500):
        prefix = key_prefix_generate(settings.API_KEY_PRODUCT_PREFIX)
        raw = key_compose(prefix, key_secret_generate())
        rows.append(
            ApiKey(
                tenant=tenant,
                name="k",
                prefix=prefix,
                key_hash=key_hash(raw, pepper),
                scopes=["predict"],
                created_by="test",
            )
        )
        prefixes.append((raw, prefix))
    ApiKey.objects.bulk_create(rows)
    for _ in range(2):
        for raw, _prefix in prefixes:
            response = client.post(
                "/v1/models/iris/predict",
                data=json.dumps({"instances": ROWS[:1], "purpose": "research"}),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {raw}",
            )
            assert response.status_code == 200, response.content
    rows = AuditEvent.objects.filter(action="models.predict", model_name="iris", detail__rollout__id=rollout.pk)
    versions = Counter(rows.values_list("model_version", flat=True))
    assert sum(versions.values()) == 1000
    assert 150 <= versions[2] <= 250, versions
    per_key: dict[str, set[int]] = {}
    for prefix, version in rows.values_list("key_prefix", "model_version"):
        per_key.setdefault(prefix, set()).add(version)
    assert len(per_key) == 500
    assert all(len(v) == 1 for v in per_key.values())


def test_canary_answers_names_its_version_and_stable_runs_unseen(client, iris, make_caller):
    rollout = start(3, canary_percent=50)
    [on] = canary_callers(make_caller, rollout, want=True)
    [off] = canary_callers(make_caller, rollout, want=False)
    response = predict(client, on)
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 3
    # v3 answers with its own (reversed) labels; stable's answer is not returned.
    assert [p["label"] for p in body["predictions"]] == ["virginica", "versicolor", "setosa"]
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert event.model_version == 3
    assert event.detail["rollout"] == {"id": rollout.pk, "arm": "canary"}
    [stable_run] = event.detail["shadows"]
    assert stable_run["version"] == 1 and stable_run["role"] == "stable"
    assert stable_run["agreement"] == pytest.approx(1 / 3)
    assert predict(client, off).json()["version"] == 1
    # GET /v1/models/{name} tells each caller its version.
    detail = client.get("/v1/models/iris", **on.headers).json()
    assert detail["version"] == 1 and detail["assigned_version"] == 3
    assert detail["rollout"] == {"id": rollout.pk, "arm": "canary"}
    assert client.get("/v1/models/iris", **off.headers).json()["assigned_version"] == 1


def test_shadow_never_answers_and_its_agreement_is_audited(client, iris, make_caller, settings, tmp_path):
    start(3, shadow=True)
    caller = make_caller()
    response = predict(client, caller)
    body = response.json()
    assert body["version"] == 1
    assert [p["label"] for p in body["predictions"]] == ["setosa", "versicolor", "virginica"]
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    [shadow] = event.detail["shadows"]
    assert shadow["version"] == 3 and shadow["role"] == "shadow"
    assert shadow["agreement"] == pytest.approx(1 / 3)
    assert shadow["labels"] == {"setosa": 1, "versicolor": 1, "virginica": 1}
    assert "shadow" in response["Server-Timing"]
    # v2 API: the same pipeline, the same shadow.
    v2 = client.post(
        "/v2/models/iris/infer",
        data=json.dumps(
            {
                "inputs": [
                    {"name": "features", "shape": [3, 4], "datatype": "FP32", "data": [v for row in ROWS for v in row]}
                ],
                "parameters": {"purpose": "research"},
            }
        ),
        content_type="application/json",
        **caller.headers,
    )
    assert v2.status_code == 200, v2.content
    assert v2.json()["model_version"] == "1"
    assert AuditEvent.objects.get(request_id=v2["X-Request-ID"]).detail["shadows"][0]["version"] == 3
    # The rollout and shadow members are part of the sealed record like every other detail.
    settings.AUDIT_SEAL_LAG_SECONDS = 0
    assert audit_seal().events > 0
    assert audit_verify().ok
    for fmt in ("csv", "jsonl"):  # and the offline verifier reads them back from an export, byte for byte
        path = tmp_path / f"export.{fmt}"
        with path.open("wb") as stream:
            manifest = audit_export_write(
                filters=ExportFilters(), format=fmt, stream=stream, actor="test", file_name=path.name
            )
        manifest_path = tmp_path / f"export.{fmt}.manifest.json"
        manifest_path.write_text(canonical_json(manifest))
        report = verify_export(path, manifest_path, fingerprint=audit_public_key_info()["key_id"])
        assert report.ok, report.problems


def test_a_failing_shadow_never_fails_the_answer(client, iris, make_caller, monkeypatch):
    start(2, shadow=True)
    import inference.shadow

    real = inference.shadow.model_predict

    def broken(*, model, batch):
        if model.version == 2:
            raise RuntimeError("shadow crashed")
        return real(model=model, batch=batch)

    monkeypatch.setattr(inference.shadow, "model_predict", broken)
    response = predict(client, make_caller())
    assert response.status_code == 200 and response.json()["version"] == 1
    [shadow] = AuditEvent.objects.get(request_id=response["X-Request-ID"]).detail["shadows"]
    assert shadow["error"] == "RuntimeError" and shadow["agreement"] is None


def test_readiness_gate_a_canary_that_does_not_verify_falls_back_to_stable(client, iris, make_caller):
    rollout = rollout_start(name="iris", version=2, actor="test", canary_percent=100)
    # Altered after the rollout started: the session never loads, so the canary gets no traffic.
    iris[2].absolute_path().write_bytes(b"not an onnx file")
    assert rollout_versions_warm(name="iris") == {2: False}
    caller = make_caller()
    for _ in range(3):
        response = predict(client, caller)
        assert response.status_code == 200, response.content
        assert response.json()["version"] == 1
    event = AuditEvent.objects.filter(request_id=response["X-Request-ID"]).get()
    assert event.detail["rollout"] == {"id": rollout.pk, "arm": "stable", "canary_skipped": "not_ready"}
    # ...and promoting it is refused: the file is checked again.
    with pytest.raises(ModelIntegrityFailed):
        rollout_promote(name="iris", actor="test")


def test_readiness_gate_a_canary_not_loaded_yet_is_loaded_in_the_background(client, iris, make_caller):
    rollout_start(name="iris", version=2, actor="test", canary_percent=100)
    caller = make_caller()
    first = predict(client, caller)
    assert first.status_code == 200 and first.json()["version"] == 1  # not loaded in this process yet
    for _ in range(200):
        if ready_model(name="iris", version=2) is not None:
            break
        threading.Event().wait(0.01)
    assert predict(client, caller).json()["version"] == 2


def test_policy_rule_decides_which_tenants_may_be_served_a_canary(client, iris, make_caller):
    rollout = start(2, canary_percent=100)
    policy_create(
        name="canary-opt-in",
        document=[
            {
                "id": "opted-in",
                "type": "canary_eligibility",
                "mode": "enforce",
                "params": {"tenants": ["early-bird"], "exclude_purposes": ["marketing"]},
            }
        ],
        actor="test",
        reason="only opted-in tenants try new versions",
    )
    early = make_caller("early-bird", purposes=["research", "marketing"])
    other = make_caller("other")
    assert predict(client, early).json()["version"] == 2
    for caller, purpose in ((early, "marketing"), (other, "research")):
        response = predict(client, caller, {"purpose": purpose})
        assert response.status_code == 200 and response.json()["version"] == 1
        event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
        assert event.detail["rollout"]["canary_skipped"] == "policy"
    # Pinning the canary does not get round the rule (and tells nothing more than a missing version).
    assert_problem(predict(client, other, {"version": 2}), 404, "model_version_not_found")
    assert_problem(predict(client, early, {"version": 2, "purpose": "marketing"}), 404, "model_version_not_found")
    # ...nor do the v2 metadata and readiness endpoints confirm it.
    for suffix in ("", "/ready"):
        response = client.get(f"/v2/models/iris/versions/2{suffix}", **other.headers)
        assert response.status_code == 404, response.content
        assert client.get(f"/v2/models/iris/versions/2{suffix}", **early.headers).status_code == 200
    pinned = predict(client, early, {"version": 1})
    assert pinned.json()["version"] == 1
    assert AuditEvent.objects.get(request_id=pinned["X-Request-ID"]).detail["rollout"] == {
        "id": rollout.pk,
        "arm": "pinned",
    }
    assert predict(client, early, {"version": 2}).json()["version"] == 2


def test_batch_jobs_follow_the_callers_assignment(
    client, iris, make_caller, settings, tmp_path, celery_eager, django_capture_on_commit_callbacks
):
    settings.JOBS_DIR = str(tmp_path / "jobs")
    rollout = start(2, canary_percent=50)
    [on] = canary_callers(make_caller, rollout, want=True)
    with django_capture_on_commit_callbacks() as enqueued:
        response = client.post(
            "/v1/jobs",
            data=json.dumps({"model": "iris", "instances": ROWS, "purpose": "research"}),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY="job-1",
            **on.headers,
        )
    assert response.status_code == 202, response.content
    assert response.json()["version"] == 2
    # The rollout ends before the job runs: the job keeps the version it was accepted with.
    rollout_rollback(name="iris", actor="test", reason="test")
    for callback in enqueued:
        callback()
    job = client.get(response["Location"], **on.headers).json()
    assert job["status"] == "succeeded", job
    assert job["version"] == 2


def test_rollback_on_threshold_is_automatic_and_audited(client, iris, make_caller, settings):
    rollout = start(3, canary_percent=100, min_agreement=0.9, min_requests=5)
    caller = make_caller()
    for _ in range(5):
        assert predict(client, caller).json()["version"] == 3
    assert rollouts_evaluate() != []
    clock.reset()
    rollout.refresh_from_db()
    assert rollout.state == ModelRollout.State.ROLLED_BACK
    assert rollout.ended_by == "system:rollout-monitor"
    assert "agreement with stable 0.3333 < 0.9" in rollout.end_reason
    event = AuditEvent.objects.filter(action="model.rollout.rollback").get()
    assert event.detail["reason"] == rollout.end_reason
    assert event.detail["figures"]["3"]["requests"] == 5
    # Everyone is back on stable within the invalidation interval (here: at once, one process).
    assert predict(client, caller).json()["version"] == 1
    assert rollouts_evaluate() == []
    # The beat schedule names the task by its registered name.
    assert settings.CELERY_BEAT_SCHEDULE["rollouts-evaluate"]["task"] == ROLLOUTS_EVALUATE_TASK
    assert rollouts_evaluate_task.name == ROLLOUTS_EVALUATE_TASK and rollouts_evaluate_task() == []


def test_a_healthy_canary_is_not_rolled_back(client, iris, make_caller):
    rollout = start(2, canary_percent=100, min_agreement=0.9, max_error_rate=0.01, min_requests=3)
    caller = make_caller()
    for _ in range(3):
        predict(client, caller)
    assert rollouts_evaluate() == []
    rollout.refresh_from_db()
    assert rollout.state == ModelRollout.State.ACTIVE


def test_promote_and_commands_with_status(client, iris, make_caller, capsys):
    call_command("rollout_model", "iris", "2", "--canary-percent", "10", "--reason", "try v2")
    call_command("rollout_model", "iris", "2", "--canary-percent", "30")  # a ramp
    call_command("rollout_model", "iris", "3", "--shadow")
    clock.reset()
    rollout = ModelRollout.objects.get(state="active")
    assert (rollout.canary_version, rollout.canary_percent, rollout.shadow_versions) == (2, 30.0, [3])
    rollout_versions_warm(name="iris")
    predict(client, make_caller())
    capsys.readouterr()
    call_command("rollout_status", "iris", "--json")
    status = json.loads(capsys.readouterr().out)
    assert status["canary_version"] == 2 and status["reason"] == "try v2"
    figures = {v["version"]: v for v in status["versions"]}
    assert figures[1]["requests"] + figures[2]["requests"] == 1
    assert figures[3]["requests"] == 1 and figures[3]["role"] == "shadow"
    call_command("rollout_status", "iris")
    assert "canary v2 at 30 %" in capsys.readouterr().out
    call_command("promote_model", "iris", "--reason", "good figures")
    clock.reset()
    assert ModelVersion.objects.get(name="iris", status="active").version == 2
    rollout.refresh_from_db()
    assert rollout.state == "promoted"
    assert predict(client, make_caller()).json()["version"] == 2
    # No rollout now: rollback_model undoes the promotion.
    call_command("rollback_model", "iris", "--reason", "customer complaints")
    assert ModelVersion.objects.get(name="iris", status="active").version == 1
    actions = list(
        AuditEvent.objects.filter(event_type="model.lifecycle", action__startswith="model.").values_list(
            "action", flat=True
        )
    )
    assert actions[-6:] == [
        "model.rollout.start",
        "model.rollout.update",
        "model.rollout.update",
        "model.activate",
        "model.rollout.promote",
        "model.rollback",
    ]
    rollback = AuditEvent.objects.filter(action="model.rollback").last()
    assert rollback.detail["reason"] == "customer complaints"


@pytest.mark.parametrize("percent", ["0", "-5", "100.5", "nan", "inf", "ten", ""])
def test_hostile_bad_percent_is_refused(iris, percent):
    with pytest.raises(InvalidRollout):
        rollout_start(name="iris", version=2, actor="test", canary_percent=percent)
    with pytest.raises(CommandError, match="percentage"):
        call_command("rollout_model", "iris", "2", "--canary-percent", percent)
    assert not ModelRollout.objects.exists()


def test_hostile_unknown_retired_active_and_conflicting_versions(iris):
    with pytest.raises(ModelVersionNotFound):
        rollout_start(name="iris", version=9, actor="test", canary_percent=10)
    with pytest.raises(ModelVersionNotFound):
        rollout_start(name="nothing", version=1, actor="test", shadow=True)
    for version in ("-1", "99999999999"):  # out of the column's range: not found, never a database error
        with pytest.raises(CommandError, match="has no version"):
            call_command("rollout_model", "iris", version, "--shadow")
    with pytest.raises(CommandError):
        call_command("rollout_model", "iris", "2", "--shadow", "--canary-percent", "5")  # argparse: one mode
    with pytest.raises(RolloutConflict, match="active"):
        rollout_start(name="iris", version=1, actor="test", canary_percent=10)
    model_version_retire(version=iris[3], actor="test")
    with pytest.raises(RolloutConflict, match="retired"):
        rollout_start(name="iris", version=3, actor="test", shadow=True)
    with pytest.raises(InvalidRollout):
        rollout_start(name="iris", version=2, actor="test")
    with pytest.raises(InvalidRollout):
        rollout_start(name="iris", version=2, actor="test", shadow=True, canary_percent=5)
    rollout_start(name="iris", version=2, actor="test", canary_percent=10)
    v4 = model_version_register(
        name="iris", data=onnx_models.classifier(), actor="test", labels=onnx_models.IRIS_LABELS, value_max=10.0
    )
    with pytest.raises(RolloutConflict, match="already has canary"):
        rollout_start(name="iris", version=v4.version, actor="test", canary_percent=10)
    with pytest.raises(RolloutConflict, match="canary"):
        rollout_start(name="iris", version=2, actor="test", shadow=True)
    # A version taking part in a rollout cannot be retired under it.
    from inference.errors import ModelLifecycleConflict

    with pytest.raises(ModelLifecycleConflict, match="rollout"):
        model_version_retire(version=iris[2], actor="test")
    with pytest.raises(InvalidRollout, match="reason"):
        rollout_rollback(name="iris", actor="test", reason="  ")
    with pytest.raises(CommandError):
        call_command("promote_model", "nothing")
    with pytest.raises(CommandError):
        call_command("rollout_status", "nothing")


@pytest.mark.django_db(transaction=True)
def test_concurrent_rollout_commands_leave_one_rollout(iris):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers; the race needs PostgreSQL row locks")
    from django.db import connections

    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def run(version: int) -> None:
        barrier.wait()
        try:
            rollout_start(name="iris", version=version, actor="test", canary_percent=10 + version)
            outcomes.append(f"ok {version}")
        except RolloutConflict:
            outcomes.append("conflict")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(v,)) for v in (2, 3, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    rollouts = list(ModelRollout.objects.all())
    assert len(rollouts) == 1
    winner = rollouts[0].canary_version
    # The winner's version may ramp again; the other version is always refused.
    assert all(o in (f"ok {winner}", "conflict") for o in outcomes), outcomes
    assert outcomes.count("conflict") >= 1


def test_tenant_isolation_a_tenants_canary_rule_and_assignment_stay_its_own(client, iris, make_caller):
    rollout = start(2, canary_percent=100)
    policy_create(
        name="tenant-a-no-canaries",
        document=[{"id": "none", "type": "canary_eligibility", "mode": "enforce", "params": {"tenants": []}}],
        actor="test",
        reason="tenant a opted out",
        scope="tenant",
        tenant_slug="tenant-a",
    )
    a, b = make_caller("tenant-a"), make_caller("tenant-b")
    assert predict(client, a).json()["version"] == 1
    assert predict(client, b).json()["version"] == 2
    assert client.get("/v1/models/iris", **a.headers).json()["rollout"] == {
        "id": rollout.pk,
        "arm": "stable",
        "canary_skipped": "policy",
    }
    assert client.get("/v1/models/iris", **b.headers).json()["assigned_version"] == 2
    # Tenant b's records name neither tenant a's policy nor its key.
    b_events = AuditEvent.objects.filter(tenant_slug="tenant-b", action="models.predict")
    assert all("tenant-a" not in e.policy_versions and e.key_prefix == b.prefix for e in b_events)
    caller = make_caller(models=["other-model"])
    # A key not allowed the model sees no model, no assignment, no rollout id.
    assert_problem(client.get("/v1/models/iris", **caller.headers), 404, "model_not_found")
    assert_problem(predict(client, caller), 404, "model_not_found")
    events = AuditEvent.objects.filter(key_prefix=caller.prefix)
    assert all("rollout" not in (e.detail or {}) for e in events)
    assert rollout.pk


def test_bucket_is_uniform_and_stable():
    buckets = [rollout_bucket(rollout_id=7, key_prefix=f"mk_{i:06d}") for i in range(4000)]
    assert buckets == [rollout_bucket(rollout_id=7, key_prefix=f"mk_{i:06d}") for i in range(4000)]
    share = np.mean([b < 2000 for b in buckets])
    assert 0.17 < share < 0.23
    # A new rollout reshuffles.
    assert buckets != [rollout_bucket(rollout_id=8, key_prefix=f"mk_{i:06d}") for i in range(4000)]
