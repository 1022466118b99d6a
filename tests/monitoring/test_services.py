"""Live statistics through the governed pipeline, their flush, and the monitors judging a window."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from django.db import connection

from audit.models import AuditEvent
from inference.models import ModelVersion
from monitoring.live import LiveStats, batch_counts
from monitoring.models import Alert, LiveWindow, MonitorResult
from monitoring.selectors import live_bins_get
from monitoring.services import live_stats, live_stats_flush, live_window_merge, window_evaluate, windows_evaluate_due
from monitoring.tasks import window_evaluate_task, windows_evaluate_due_task
from policy.errors import PolicyInvalid
from policy.models import KillSwitch
from policy.services import policy_create
from tests.fixtures.tenants import caches_expire
from tests.support import assert_problem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

PREDICT = "/v1/models/digits/predict"


def post(client, caller, instances, purpose="research"):
    body = json.dumps({"instances": instances, "purpose": purpose})
    return client.post(PREDICT, data=body, content_type="application/json", **caller.headers)


def drift_policy(*, mode="enforce", action="record", **thresholds):
    return policy_create(
        name=f"drift-{mode}",
        document=[
            {
                "id": "drift",
                "type": "monitoring",
                "mode": mode,
                "params": {"thresholds": thresholds or {"feature_psi": 0.5}, "min_instances": 20, "action": action},
            }
        ],
        actor="staff:test",
        reason="watch the digits",
    )


def research_only():
    """A purpose limitation: any other declared purpose is a policy denial (403)."""
    rule = {"id": "research", "type": "purpose_limitation", "mode": "enforce", "params": {"purposes": ["research"]}}
    policy_create(name="research-only", document=[rule], actor="staff:test", reason="purpose limitation")


def flushed_window(version: ModelVersion) -> LiveWindow:
    assert live_stats_flush() >= 1
    return LiveWindow.objects.get(model_version=version)


def test_served_batches_are_counted_without_inputs_and_flushed_per_window(client, profiled, make_caller, digit_rows):
    caller = make_caller()
    assert post(client, caller, digit_rows[:30].tolist()).status_code == 200
    assert post(client, caller, [[99.0] * 64]).status_code == 400  # outside the value range: a client error
    research_only()
    assert post(client, caller, digit_rows[:2].tolist(), purpose="marketing").status_code == 403  # a denial
    window = flushed_window(profiled)
    assert (window.requests, window.instances, window.client_errors, window.denials) == (3, 30, 1, 1)
    assert sum(window.prediction_counts) == 30 and sum(window.confidence_counts) == 30
    features = np.asarray(window.feature_counts).reshape(64, window.feature_slots)
    assert (features.sum(axis=1) == 30).all()
    # Counts only: nothing that could rebuild an input, a tenant or a key is stored.
    stored = json.dumps([window.feature_counts, window.prediction_counts, window.confidence_counts])
    assert caller.tenant.slug not in stored and caller.prefix not in stored
    assert {f.name for f in LiveWindow._meta.get_fields()}.isdisjoint({"tenant", "tenant_id", "input", "instances_raw"})
    assert live_stats().pending() == 0 and live_stats_flush() == 0


def test_a_tenant_never_sees_another_tenants_traffic(client, profiled, make_caller, digit_rows):
    watcher, busy = make_caller("watcher"), make_caller("busy")
    before = client.get("/v1/models/digits", **watcher.headers).json()
    assert post(client, busy, (np.full((40, 64), 16.0)).tolist()).status_code == 200
    live_stats_flush()
    after = client.get("/v1/models/digits", **watcher.headers).json()
    assert after == before  # cards show reference data only; live windows are never on the tenant API
    assert "live" not in json.dumps(after) and busy.tenant.slug not in json.dumps(after)
    hidden = make_caller("other", models=["nothing"])
    assert_problem(client.get("/v1/models/digits", **hidden.headers), 404, "model_not_found")


def test_concurrent_flushes_of_one_window_lose_no_count(transactional_db, profiled):
    bins = live_bins_get(name="digits", version=1)
    rows = np.full((3, 64), 4.0)
    probabilities = np.full((3, 10), 0.1)
    record = LiveStats().window_start(1_000_000)
    stats = LiveStats()
    stats.add_batch(
        name="digits",
        version=1,
        bins=bins,
        batch=batch_counts(bins=bins, features=rows, probabilities=probabilities),
        now=1_000_000,
    )
    stats.add_outcome(name="digits", version=1, bins=bins, status=200, denied=False, now=1_000_000)
    ((_, counts),) = stats.drain()
    errors = []

    def flusher():
        # Each thread stands for one gateway process flushing its own counts of the same window.
        try:
            for _ in range(10):
                live_window_merge(model_name="digits", version=1, window_start=record, counts=counts.as_record())
        except Exception as exc:  # reported below: the assertion names it
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=flusher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    window = LiveWindow.objects.get()
    assert (window.flushes, window.requests, window.instances) == (20, 20, 60)
    features = np.asarray(window.feature_counts).reshape(64, window.feature_slots)
    assert (features.sum(axis=1) == 60).all() and sum(window.prediction_counts) == 60


def test_a_shifted_stream_breaches_drift_and_the_enforce_rule_kills_the_model(client, profiled, make_caller):
    drift_policy(action="kill_switch", feature_psi=0.5, confidence_psi=5.0)
    caller = make_caller()
    saturated = np.full((40, 64), 16.0).tolist()  # every pixel saturated
    assert post(client, caller, saturated).status_code == 200
    window = flushed_window(profiled)
    result = window_evaluate(window_id=window.pk)
    assert result.status == MonitorResult.Status.BREACH and result.has_reference
    assert result.measures["feature_psi"] > 0.5 and result.measures["feature_p_value"] < 1e-6
    (breach,) = [b for b in result.breaches if b["measure"] == "feature_psi"]
    assert breach["mode"] == "enforce" and breach["policy"] == "drift-enforce@1"
    assert KillSwitch.objects.filter(target_type="model", target="digits", lifted_at__isnull=True).exists()
    assert [a["action"] for a in result.actions] == ["alert", "kill_switch"]
    alert = Alert.objects.get()
    assert (alert.status, alert.rule_id, alert.policy_version) == ("open", "drift-enforce/drift", "drift-enforce@1")
    assert {m["measure"] for m in alert.measures} == {"feature_psi"}
    event = AuditEvent.objects.get(event_type=AuditEvent.Type.MONITORING, action="monitoring.window")
    assert event.detail["after"]["status"] == "breach" and event.detail["policy_versions"] == "drift-enforce@1"
    # Idempotent: a second evaluation (a redelivered task) changes nothing.
    assert window_evaluate_task(window.pk) == "breach"
    assert MonitorResult.objects.count() == 1 and Alert.objects.count() == 1
    assert AuditEvent.objects.filter(event_type="monitoring", action="monitoring.window").count() == 1


def test_monitor_mode_records_the_breach_and_acts_on_nothing(client, profiled, make_caller):
    drift_policy(mode="monitor", action="kill_switch", feature_psi=0.5)
    assert post(client, make_caller(), np.full((25, 64), 16.0).tolist()).status_code == 200
    result = window_evaluate(window_id=flushed_window(profiled).pk)
    assert result.status == "breach" and result.breaches[0]["mode"] == "monitor" and result.actions == []
    assert not KillSwitch.objects.exists() and not Alert.objects.exists()


def test_the_reference_distribution_itself_stays_within_thresholds(client, profiled, make_caller, digit_rows):
    drift_policy(feature_psi=0.5, prediction_p_value=1e-6, review_rate=0.9)
    assert post(client, make_caller(), digit_rows[:200].tolist()).status_code == 200
    result = window_evaluate(window_id=flushed_window(profiled).pk)
    assert result.status == "ok", result.breaches
    assert result.measures["feature_psi"] < 0.5 and result.measures["prediction_p_value"] > 1e-6


def test_a_model_without_reference_profile_is_judged_on_rates_only(client, digits, make_caller, digit_rows):
    drift_policy(feature_psi=0.1, denial_rate=0.2)
    research_only()
    caller = make_caller()
    for _ in range(20):
        assert post(client, caller, digit_rows[:1].tolist(), purpose="marketing").status_code == 403
    assert post(client, caller, digit_rows[:1].tolist()).status_code == 200
    result = window_evaluate(window_id=flushed_window(digits).pk)
    assert not result.has_reference and result.measures["feature_psi"] is None
    assert [b["measure"] for b in result.breaches] == ["denial_rate"]


def test_beat_task_judges_only_closed_windows_once(settings, profiled, make_caller, client, digit_rows, monkeypatch):
    from monitoring.services import monitors

    drift_policy(feature_psi=0.5)
    assert post(client, make_caller(), digit_rows[:5].tolist()).status_code == 200
    window = flushed_window(profiled)
    assert windows_evaluate_due_task() == 0  # the window is still open
    later = window.window_start.timestamp() + settings.MONITORING_WINDOW_SECONDS + settings.MONITORING_GRACE_SECONDS + 1
    from datetime import UTC, datetime

    sent = []
    monkeypatch.setattr(monitors, "task_enqueue", lambda **kwargs: sent.append(kwargs) or True)
    due = datetime.fromtimestamp(later, tz=UTC)
    assert windows_evaluate_due(now=due, enqueue=True) == 1  # the beat task's way: one task per window, by id
    assert [(m["task"], m["args"]) for m in sent] == [("monitoring.window_evaluate", (window.pk,))]
    assert windows_evaluate_due(now=due) == 1
    assert windows_evaluate_due(now=due) == 0
    assert MonitorResult.objects.get().status == "insufficient"  # 5 instances, the rule wants 20


def test_malformed_monitoring_rules_are_refused_with_a_problem_code():
    bad = [{"id": "m", "type": "monitoring", "mode": "enforce", "params": {"thresholds": {"feature_psi": "high"}}}]
    with pytest.raises(PolicyInvalid) as excinfo:
        policy_create(name="bad", document=bad, actor="staff:test", reason="try")
    assert (excinfo.value.status, excinfo.value.code) == (400, "policy_invalid")
    assert "thresholds.feature_psi must be a finite number" in excinfo.value.detail
    tenant_rule = [{"id": "m", "type": "monitoring", "mode": "enforce", "params": {"thresholds": {"denial_rate": 0.5}}}]
    with pytest.raises(PolicyInvalid, match="global or model policies"):
        policy_create(
            name="t", document=tenant_rule, actor="staff:test", reason="try", scope="tenant", tenant_slug="acme"
        )


def test_statistics_never_fail_a_request(client, profiled, make_caller, digit_rows, monkeypatch):
    from monitoring import live

    def broken(self, **kwargs):
        raise RuntimeError("counting failed")

    monkeypatch.setattr(live.LiveStats, "add_batch", broken)
    assert post(client, make_caller(), digit_rows[:2].tolist()).status_code == 200
    assert time.time() > 0  # and the request was answered


def test_a_lasting_breach_is_one_alert_until_an_operator_closes_it(profiled):
    from monitoring.services import AlertConflict, alert_close, alert_raise

    drift_policy(action="alert", feature_psi=0.5)
    bins = live_bins_get(name="digits", version=1)
    rows, probabilities = np.full((30, 64), 16.0), np.full((30, 10), 0.1)
    results = []
    for start in (3_000_000, 3_000_300):  # two consecutive windows of the same shifted stream
        stats = LiveStats()
        batch = batch_counts(bins=bins, features=rows, probabilities=probabilities)
        stats.add_batch(name="digits", version=1, bins=bins, batch=batch, now=start)
        ((key, counts),) = stats.drain()
        window = live_window_merge(model_name="digits", version=1, window_start=key[2], counts=counts.as_record())
        results.append(window_evaluate(window_id=window.pk))
    assert [r.actions[0]["opened"] for r in results] == [True, False]
    alert = Alert.objects.get()
    assert (alert.windows, alert.first_result, alert.last_result) == (2, results[0], results[1])
    with pytest.raises(Exception, match="note") as excinfo:
        alert_close(alert=alert, actor="staff:ops", note="  ")
    assert excinfo.value.status == 400
    closed = alert_close(alert=alert, actor="staff:ops", note="retrained on saturated scans")
    assert closed.status == "closed" and closed.closed_by == "staff:ops"
    with pytest.raises(AlertConflict):
        alert_close(alert=alert, actor="staff:ops", note="again")
    # A new breach after closing opens a new alert.
    alert_raise(version=profiled, result=results[1], rule_id=alert.rule_id, policy_version="p@1", measures=[])
    assert Alert.objects.filter(status="open").count() == 1 and Alert.objects.count() == 2
    actions = list(AuditEvent.objects.filter(action__startswith="monitoring.alert").values_list("action", flat=True))
    assert sorted(actions) == sorted(
        ["monitoring.alert_open", "monitoring.alert_update", "monitoring.alert_close", "monitoring.alert_open"]
    )


def _canary_on_trial(*, onnx_bytes, digit_rows):
    """``digits`` v2 (profiled like v1) as a 100 % canary, its session loaded in this process."""
    from inference.routing import rollout_versions_warm
    from inference.services import model_version_register
    from inference.services.rollouts import rollout_start

    canary = model_version_register(
        name="digits", data=onnx_bytes, actor="test", reference=digit_rows[:400], reference_source="test rows"
    )
    rollout = rollout_start(name="digits", version=canary.version, actor="staff:test", canary_percent=100, reason="v2")
    assert rollout_versions_warm(name="digits") == {canary.version: True}
    return canary, rollout


def test_an_alert_on_a_rollouts_canary_rolls_the_rollout_back(client, profiled, make_caller, onnx_bytes, digit_rows):
    from inference.models import ModelRollout

    canary, rollout = _canary_on_trial(onnx_bytes=onnx_bytes, digit_rows=digit_rows)
    drift_policy(action="alert", feature_psi=0.5, confidence_psi=5.0)
    response = post(client, make_caller(), np.full((40, 64), 16.0).tolist())  # every pixel saturated
    assert response.status_code == 200 and response.json()["version"] == canary.version
    result = window_evaluate(window_id=flushed_window(canary).pk)
    assert [a["action"] for a in result.actions] == ["alert", "rollout_rollback"]
    rollout.refresh_from_db()
    assert rollout.state == ModelRollout.State.ROLLED_BACK
    event = AuditEvent.objects.get(action="model.rollout.rollback")
    assert event.actor == "monitoring" and event.detail["reason"].startswith(f"monitoring alert on {canary.ref}")
    # Everyone is back on the stable version (once this process re-reads the generations, as each second).
    caches_expire()
    assert post(client, make_caller(), [[0.0] * 64]).json()["version"] == profiled.version


def test_an_alert_on_the_stable_version_leaves_the_rollout_alone(client, profiled, make_caller, onnx_bytes, digit_rows):
    """The stable version's own breach is the kill switch's business: ending the trial would not take it away."""
    from inference.models import ModelRollout

    _, rollout = _canary_on_trial(onnx_bytes=onnx_bytes, digit_rows=digit_rows)
    drift_policy(action="alert", feature_psi=0.5, confidence_psi=5.0)
    body = json.dumps({"instances": np.full((40, 64), 16.0).tolist(), "purpose": "research", "version": 1})
    response = client.post(PREDICT, data=body, content_type="application/json", **make_caller().headers)
    assert response.status_code == 200 and response.json()["version"] == profiled.version  # pinned: stable
    result = window_evaluate(window_id=flushed_window(profiled).pk)
    assert [a["action"] for a in result.actions] == ["alert"]
    rollout.refresh_from_db()
    assert rollout.state == ModelRollout.State.ACTIVE
