"""Monitors: judge each closed window of live statistics against the ``monitoring`` policy rules.

Per model version and window, :func:`measures_compute` measures (None where
not measurable):

* drift, against the version's reference profile (``inference.profile``):
  the largest per-feature PSI and the smallest Bonferroni-adjusted per-feature
  chi-square p-value (``monitoring.measures``), and PSI and p-value of the
  predicted labels (or values) and of the top-class confidence;
* oversight: the human-review flag rate (flags / instances) and the reviewers'
  override rate (overrides / decisions taken on this version's review items
  during the window, from the review queue);
* operations: client error, policy denial and 5xx rates (per request).

Thresholds and actions are policy (``policy.rules`` type ``monitoring``), so
they are versioned and audited like every other rule.  An ``enforce`` rule
acts on a breach (``record``, or ``kill_switch``: the model's kill switch is
engaged); a ``monitor`` rule's breaches are recorded and change nothing.
Every evaluation writes one :class:`~monitoring.models.MonitorResult` and one
audit event; the window's unique result makes a repeated evaluation a no-op.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_change_record
from core.queue import leave_for_recovery, task_enqueue
from inference.models import ModelVersion
from inference.selectors import rollout_current_get
from inference.services.rollouts import rollout_rollback
from monitoring.live import CONFIDENCE_SLOTS
from monitoring.measures import bonferroni_min, chi_square_p, psi
from monitoring.models import LiveWindow, MonitorResult
from monitoring.selectors import windows_unevaluated
from monitoring.services.alerts import alert_raise
from policy.errors import KillSwitchConflict
from policy.evaluator import monitoring_rules
from policy.models import KillSwitch, ReviewItem
from policy.rules import MONITORING_THRESHOLDS
from policy.selectors import policy_set_get
from policy.services import kill_switch_engage
from policy.types import ModelFacts

logger = logging.getLogger("monitoring.monitors")

ACTOR = "monitoring"
#: The task that judges one window by id (``monitoring.tasks``).
WINDOW_EVALUATE_TASK = "monitoring.window_evaluate"
#: Measures that need instances (the others need requests, or review decisions).
INSTANCE_MEASURES = frozenset(
    {
        "feature_psi",
        "feature_p_value",
        "prediction_psi",
        "prediction_p_value",
        "confidence_psi",
        "confidence_p_value",
        "review_rate",
    }
)
REQUEST_MEASURES = frozenset({"client_error_rate", "denial_rate", "server_error_rate"})
WORST_FEATURES = 5


def _finite(value: float) -> float | None:
    return round(float(value), 6) if np.isfinite(value) else None


def _drift(reference: list[int] | None, live: list[int] | None) -> tuple[float | None, float | None]:
    if not reference or not live or len(reference) != len(live) or sum(live) == 0:
        return None, None
    ref, cur = np.asarray([reference]), np.asarray([live])
    return _finite(psi(ref, cur)[0]), _finite(chi_square_p(ref, cur)[0])


def _override_rate(window: LiveWindow) -> tuple[float | None, int]:
    end = window.window_start + timedelta(seconds=window.window_seconds)
    version = window.model_version
    counts = ReviewItem.objects.filter(
        model_name=version.name,
        model_version=version.version,
        reviewed_at__gte=window.window_start,
        reviewed_at__lt=end,
    ).aggregate(
        decided=Count("pk", filter=Q(status=ReviewItem.Status.REVIEWED)),
        overridden=Count("pk", filter=Q(decision=ReviewItem.Decision.OVERRIDDEN)),
    )
    decided = counts["decided"] or 0
    return (round(counts["overridden"] / decided, 6) if decided else None), decided


def measures_compute(window: LiveWindow) -> dict[str, Any]:
    """Every measure of one window (see the module docstring); ``None`` where it cannot be measured."""
    version = window.model_version
    profile = version.reference_profile or {}
    measures: dict[str, Any] = dict.fromkeys(MONITORING_THRESHOLDS)
    same_bins = bool(profile) and window.profile_digest == profile.get("digest")
    features = profile.get("features") if same_bins else None
    if features and window.feature_counts and window.feature_slots:
        live = np.asarray(window.feature_counts, dtype=np.int64).reshape(features["count"], window.feature_slots)
        live = live[:, :-1]  # the last slot counts non-finite values, which have no reference bin
        reference = np.asarray(features["counts"], dtype=np.int64)
        if live.sum() > 0 and reference.shape == live.shape:
            per_feature = psi(reference, live)
            p_values = chi_square_p(reference, live)
            measures["feature_psi"] = _finite(np.nanmax(per_feature)) if np.isfinite(per_feature).any() else None
            measures["feature_p_value"] = round(bonferroni_min(p_values), 12)
            order = np.argsort(-np.nan_to_num(per_feature, nan=-1.0))[:WORST_FEATURES]
            measures["worst_features"] = [
                {"feature": int(j), "psi": _finite(per_feature[j]), "p_value": _finite(p_values[j])} for j in order
            ]
    predictions = (profile.get("predictions") or {}) if same_bins else {}
    if predictions.get("kind") == "labels":
        measures["prediction_psi"], measures["prediction_p_value"] = _drift(
            predictions["counts"], window.prediction_counts
        )
    elif predictions.get("kind") == "values" and window.prediction_counts:
        measures["prediction_psi"], measures["prediction_p_value"] = _drift(
            predictions["counts"], window.prediction_counts[:-1]
        )
    confidence = (profile.get("confidence") or {}) if profile else {}
    if confidence and len(window.confidence_counts) == CONFIDENCE_SLOTS:
        measures["confidence_psi"], measures["confidence_p_value"] = _drift(
            confidence["counts"], window.confidence_counts[:-1]
        )
    if window.instances:
        measures["review_rate"] = round(window.review_flags / window.instances, 6)
    if window.requests:
        measures["client_error_rate"] = round(window.client_errors / window.requests, 6)
        measures["denial_rate"] = round(window.denials / window.requests, 6)
        measures["server_error_rate"] = round(window.server_errors / window.requests, 6)
    measures["override_rate"], measures["review_decisions"] = _override_rate(window)
    measures["instances"] = window.instances
    measures["requests"] = window.requests
    return measures


def _breached(measure: str, value: float, threshold: float) -> bool:
    return value > threshold if MONITORING_THRESHOLDS[measure] == "max" else value < threshold


def _judge(
    *, window: LiveWindow, measures: dict[str, Any], rules: list[tuple[str, Any]]
) -> tuple[list[dict[str, Any]], bool]:
    """Breaches of every applicable rule, and whether any rule had enough data to judge."""
    breaches: list[dict[str, Any]] = []
    judged = False
    for label, rule in rules:
        params = rule.params
        minimum = params["min_instances"]
        for measure, threshold in params["thresholds"].items():
            if measure in INSTANCE_MEASURES and window.instances < minimum:
                continue
            if measure in REQUEST_MEASURES and window.requests < minimum:
                continue
            value = measures.get(measure)
            if value is None:
                continue
            judged = True
            if _breached(measure, value, threshold):
                breaches.append(
                    {
                        "rule_id": rule.rule_id,
                        "policy": label,
                        "measure": measure,
                        "value": value,
                        "threshold": threshold,
                        "mode": "enforce" if rule.enforce else "monitor",
                        "action": params["action"],
                    }
                )
    return breaches, judged


def _rollout_rollback_on_alert(
    *, version: ModelVersion, window: LiveWindow, breaches: list[dict[str, Any]]
) -> int | None:
    """A version on trial (a rollout's canary or shadow) that raises an alert is taken off trial: the rollout ends.

    Everyone goes back to the stable version, audited with the breach as the
    reason (issue 18: rollback on a drift alert).  An alert on the stable
    version itself leaves a rollout alone: the kill switch is that case's action.
    Returns the rolled back rollout's id, or ``None``.
    """
    rollout = rollout_current_get(name=version.name)
    on_trial = rollout is not None and (
        version.version == rollout.canary_version or version.version in rollout.shadow_versions
    )
    if rollout is None or not on_trial:
        return None
    first = next(b for b in breaches if b["mode"] == "enforce")
    reason = (
        f"monitoring alert on {version.ref} ({first['rule_id']}): {first['measure']} {first['value']:.4g} "
        f"breached {first['threshold']}, window {window.window_start:%Y-%m-%dT%H:%MZ}"
    )
    ended = rollout_rollback(name=version.name, actor=ACTOR, reason=reason, rollout_id=rollout.pk)
    return rollout.pk if ended is not None else None


def _act(
    *, version: ModelVersion, window: LiveWindow, result: MonitorResult, breaches: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Carry out the enforce-mode breaches' actions: alerts, the kill switch (``record`` needs none)."""
    actions: list[dict[str, Any]] = []
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for breach in breaches:
        if breach["mode"] == "enforce" and breach["action"] in ("alert", "kill_switch"):
            by_rule.setdefault(breach["rule_id"], []).append(breach)
    for rule_id, rule_breaches in by_rule.items():
        measures = [{k: b[k] for k in ("measure", "value", "threshold")} for b in rule_breaches]
        alert, opened = alert_raise(
            version=version,
            result=result,
            rule_id=rule_id,
            policy_version=rule_breaches[0]["policy"],
            measures=measures,
        )
        actions.append({"action": "alert", "alert_id": alert.pk, "opened": opened, "rule_id": rule_id})
    if by_rule:
        rolled_back = _rollout_rollback_on_alert(version=version, window=window, breaches=breaches)
        if rolled_back is not None:
            actions.append({"action": "rollout_rollback", "rollout_id": rolled_back})
    killing = [b for b in breaches if b["mode"] == "enforce" and b["action"] == "kill_switch"]
    if killing:
        first = killing[0]
        reason = (
            f"monitoring: {first['measure']} {first['value']} breached {first['threshold']} "
            f"({first['rule_id']}) on {version.ref}, window {window.window_start:%Y-%m-%dT%H:%MZ}"
        )
        try:
            switch = kill_switch_engage(
                target_type=KillSwitch.TargetType.MODEL, target=version.name, reason=reason, actor=ACTOR
            )
            actions.append({"action": "kill_switch", "kill_switch_id": switch.pk, "rule_id": first["rule_id"]})
        except KillSwitchConflict:
            actions.append({"action": "kill_switch", "already_engaged": True, "rule_id": first["rule_id"]})
    return actions


def window_evaluate(*, window_id: int) -> MonitorResult:
    """Judge one window (idempotent: an evaluated window returns its existing result)."""
    with transaction.atomic():
        window = LiveWindow.objects.select_for_update().select_related("model_version").get(pk=window_id)
        existing = MonitorResult.objects.filter(window=window).first()
        if existing is not None:
            return existing
        version = window.model_version
        end = window.window_start + timedelta(seconds=window.window_seconds)
        facts = ModelFacts(
            name=version.name, version=version.version, risk_tier=version.risk_tier, region=version.region
        )
        rules = monitoring_rules(policy_set_get(), model=facts, now=end)
        measures = measures_compute(window)
        breaches, judged = _judge(window=window, measures=measures, rules=rules)
        if not rules:
            status = MonitorResult.Status.UNWATCHED
        elif breaches:
            status = MonitorResult.Status.BREACH
        elif judged:
            status = MonitorResult.Status.OK
        else:
            status = MonitorResult.Status.INSUFFICIENT
        policy_versions = ",".join(sorted({label for label, _ in rules}))
        result = MonitorResult.objects.create(
            window=window,
            model_version=version,
            window_start=window.window_start,
            status=status,
            has_reference=bool(version.reference_profile),
            instances=window.instances,
            measures=measures,
            breaches=breaches,
            actions=[],
            policy_versions=policy_versions[:500],
        )
        actions = _act(version=version, window=window, result=result, breaches=breaches)
        if actions:
            result.actions = actions
            result.save(update_fields=["actions"])
        audit_change_record(
            actor=ACTOR,
            action="monitoring.window",
            target=version.ref,
            before=None,
            after={"status": status, "breaches": breaches, "actions": actions},
            event_type=AuditEvent.Type.MONITORING,
            extra={
                "model_name": version.name,
                "model_version": version.version,
                "model_sha256": version.sha256,
                "window_start": window.window_start.isoformat(),
                "window_seconds": window.window_seconds,
                "instances": window.instances,
                "requests": window.requests,
                "has_reference": result.has_reference,
                "policy_versions": policy_versions,
                "monitor_result_id": result.pk,
            },
        )
    if breaches:
        logger.warning(
            "monitoring threshold breached",
            extra={"model": version.ref, "breaches": len(breaches), "window": window.window_start.isoformat()},
        )
    return result


def windows_evaluate_due(*, now: datetime | None = None, limit: int = 500, enqueue: bool = False) -> int:
    """Judge every window that closed more than ``MONITORING_GRACE_SECONDS`` ago; returns how many.

    With ``enqueue`` (the beat task) each window becomes its own
    ``monitoring.window_evaluate`` task, so one slow or failing window does not
    hold up the others; a broker outage leaves the windows unjudged, and the
    next beat run finds them again (a window without a result is still due).
    """
    now = now or timezone.now()
    window_seconds = settings.MONITORING_WINDOW_SECONDS
    # A window is judged once every process has had time to flush it (their flushers wake
    # just after the boundary; the grace covers slow ones).
    started_before = now - timedelta(seconds=window_seconds + settings.MONITORING_GRACE_SECONDS)
    done = 0
    due = windows_unevaluated(started_before=started_before).values_list("pk", flat=True)[:limit]
    for window_id in list(due):
        if enqueue:
            if not task_enqueue(task=WINDOW_EVALUATE_TASK, args=(window_id,), on_broker_failure=leave_for_recovery):
                break
        else:
            window_evaluate(window_id=window_id)
        done += 1
    return done
