"""Rollout writes: start a canary or shadow, promote, roll back, and the automatic rollback.

Every change is one transaction that locks the model's registry rows (the
same lock activation takes, so a rollout, a promotion and an activation of
one name queue behind each other instead of interleaving), bumps the
``models`` generation (every gateway process re-reads the plan within about a
second) and writes a ``model.lifecycle`` audit event with the rollout before
and after and the stated reason; if the audit insert fails, nothing changes.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_change_record
from core.invalidation import MODELS, generation_bump
from inference.errors import InvalidRollout, ModelVersionNotFound, RolloutConflict, RolloutNotFound
from inference.lifecycle_guards import lifecycle_guards_check
from inference.models import ModelRollout, ModelVersion
from inference.rollout_metrics import rollout_figures, rollout_thresholds_crossed
from inference.services.registry import model_file_verify, model_version_activate, model_version_rollback

logger = logging.getLogger("inference.rollouts")

REASON_MAX = 500
#: The beat task that judges active rollouts (``CELERY_BEAT_SCHEDULE["rollouts-evaluate"]``).
ROLLOUTS_EVALUATE_TASK = "inference.rollouts_evaluate"
#: The actor of automatic rollbacks (the beat task ``inference.rollouts_evaluate``).
MONITOR_ACTOR = "system:rollout-monitor"


def _audit(*, actor: str, action: str, name: str, before: Any, after: Any, reason: str, **extra: Any) -> None:
    details: dict[str, Any] = {"model_name": name, **extra}
    if reason:
        details["reason"] = reason
    audit_change_record(
        actor=actor,
        action=action,
        target=name,
        before=before,
        after=after,
        event_type=AuditEvent.Type.MODEL_LIFECYCLE,
        extra=details,
    )


def canary_percent_check(value: Any) -> float:
    """A canary share as a float in (0, 100]; :class:`InvalidRollout` for anything else (NaN, text, 0, 101)."""
    if isinstance(value, bool):
        raise InvalidRollout(f"The canary percentage must be a number above 0 and at most 100, not {value!r}.")
    try:
        percent = float(value)
    except (TypeError, ValueError):
        raise InvalidRollout(
            f"The canary percentage must be a number above 0 and at most 100, not {str(value)[:40]!r}."
        ) from None
    if not math.isfinite(percent) or not 0 < percent <= 100:
        raise InvalidRollout(f"The canary percentage must be above 0 and at most 100, not {str(value)[:40]}.")
    return percent


def _threshold(value: Any, name: str, *, fraction: bool) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRollout(f"{name} must be a number.") from None
    if not math.isfinite(number) or number < 0 or (fraction and number > 1):
        raise InvalidRollout(f"{name} must be {'from 0 to 1' if fraction else 'a non-negative number'}.")
    return number


def _locked_versions(name: str) -> dict[int, ModelVersion]:
    return {row.version: row for row in ModelVersion.objects.select_for_update().filter(name=name).order_by("pk")}


def _active_rollout(name: str, *, lock: bool = True) -> ModelRollout | None:
    rows = ModelRollout.objects.filter(name=name, state=ModelRollout.State.ACTIVE)
    return (rows.select_for_update() if lock else rows).first()


def rollout_start(
    *,
    name: str,
    version: int,
    actor: str,
    canary_percent: Any = None,
    shadow: bool = False,
    reason: str = "",
    max_error_rate: Any = None,
    max_latency_ms: Any = None,
    max_review_rate: Any = None,
    min_agreement: Any = None,
    min_requests: int | None = None,
) -> ModelRollout:
    """Put ``version`` of ``name`` on canary at ``canary_percent`` or add it as a shadow.

    Starts the model's rollout if none is active.  Giving the current canary
    again changes its percentage (a ramp: callers already on the canary stay
    on it when it grows).  Refused: no mode or both modes, a bad percentage,
    an unknown, retired or active version, a file that fails verification, a
    second canary, a version that is already the canary or a shadow.
    """
    if shadow == (canary_percent is not None):
        raise InvalidRollout("Give either a canary percentage or shadow, not both and not neither.")
    percent = canary_percent_check(canary_percent) if not shadow else None
    thresholds = {
        "max_error_rate": _threshold(max_error_rate, "max_error_rate", fraction=True),
        "max_latency_ms": _threshold(max_latency_ms, "max_latency_ms", fraction=False),
        "max_review_rate": _threshold(max_review_rate, "max_review_rate", fraction=True),
        "min_agreement": _threshold(min_agreement, "min_agreement", fraction=True),
    }
    if min_requests is not None and (
        isinstance(min_requests, bool) or not isinstance(min_requests, int) or not 1 <= min_requests <= 10**9
    ):
        raise InvalidRollout("min_requests must be a whole number from 1.")
    reason = (reason or "").strip()[:REASON_MAX]
    row = ModelVersion.objects.filter(name=name, version=version).first()
    if row is None:
        raise ModelVersionNotFound(f"Model {name!r} has no version {version}.")
    if row.status == ModelVersion.Status.RETIRED:
        raise RolloutConflict(f"Model {row.ref} is retired and cannot receive traffic.")
    # Outside the transaction: hashing a large file must not hold the registry lock.
    model_file_verify(version=row)
    try:
        with transaction.atomic():
            versions = _locked_versions(name)
            target = versions.get(version)
            if target is None or target.status == ModelVersion.Status.RETIRED:
                raise RolloutConflict(f"Model {name}@{version} was retired or removed meanwhile.")
            # An incident's evidence freeze covers putting a version in front of callers as well.
            lifecycle_guards_check(version=target, operation="rollout")
            stable = next((v for v in versions.values() if v.status == ModelVersion.Status.ACTIVE), None)
            if stable is None:
                raise RolloutConflict(f"Model {name!r} has no active version to roll out against; activate one first.")
            if stable.version == version:
                raise RolloutConflict(f"Model {target.ref} is the active (stable) version already.")
            rollout = _active_rollout(name)
            before = rollout.as_record() if rollout is not None else None
            if rollout is None:
                rollout = ModelRollout(
                    name=name,
                    stable_version=stable.version,
                    created_by=actor,
                    reason=reason,
                    max_error_rate=settings.ROLLOUT_MAX_ERROR_RATE,
                    min_requests=settings.ROLLOUT_MIN_REQUESTS,
                )
            if shadow:
                if rollout.canary_version == version:
                    raise RolloutConflict(f"Model {target.ref} is this rollout's canary; it cannot also be a shadow.")
                if version in rollout.shadow_versions:
                    raise RolloutConflict(f"Model {target.ref} is a shadow of this rollout already.")
                rollout.shadow_versions = [*rollout.shadow_versions, version]
            else:
                if rollout.canary_version is not None and rollout.canary_version != version:
                    raise RolloutConflict(
                        f"Rollout #{rollout.pk} of {name!r} already has canary version {rollout.canary_version}; "
                        "promote or roll it back first."
                    )
                if version in rollout.shadow_versions:
                    raise RolloutConflict(f"Model {target.ref} is a shadow of this rollout; it cannot be the canary.")
                rollout.canary_version = version
                rollout.canary_percent = percent
            for field, value in thresholds.items():
                if value is not None:
                    setattr(rollout, field, value)
            if min_requests is not None:
                rollout.min_requests = min_requests
            rollout.updated_at = timezone.now()
            rollout.save()
            generation_bump(kind=MODELS)
            _audit(
                actor=actor,
                action="model.rollout.start" if before is None else "model.rollout.update",
                name=name,
                before=before,
                after=rollout.as_record(),
                reason=reason,
                rollout_id=rollout.pk,
                model_version=version,
            )
    except IntegrityError as exc:
        # Two first rollouts of one name at once: the database keeps one active rollout per name.
        raise RolloutConflict(
            f"Another rollout of {name!r} was started at the same time; check rollout_status."
        ) from exc
    logger.info("rollout changed", extra={"model": f"{name}@{version}", "actor": actor, "rollout": rollout.pk})
    return rollout


def _end(rollout: ModelRollout, *, state: str, actor: str, reason: str) -> None:
    rollout.state = state
    rollout.ended_by = actor
    rollout.ended_at = timezone.now()
    rollout.end_reason = reason
    rollout.updated_at = rollout.ended_at
    rollout.save(update_fields=["state", "ended_by", "ended_at", "end_reason", "updated_at"])


def rollout_promote(*, name: str, actor: str, reason: str = "") -> ModelRollout:
    """Make the canary the active version and end the rollout (shadows stop with it), in one transaction."""
    reason = (reason or "").strip()[:REASON_MAX]
    rollout = ModelRollout.objects.filter(name=name, state=ModelRollout.State.ACTIVE).first()
    if rollout is None:
        raise RolloutNotFound(f"Model {name!r} has no active rollout.")
    if rollout.canary_version is None:
        raise RolloutConflict(f"Rollout #{rollout.pk} of {name!r} has no canary to promote.")
    canary = ModelVersion.objects.get(name=name, version=rollout.canary_version)
    model_file_verify(version=canary)
    with transaction.atomic():
        _locked_versions(name)
        locked = _active_rollout(name)
        if locked is None or locked.pk != rollout.pk or locked.canary_version != rollout.canary_version:
            raise RolloutConflict(f"The rollout of {name!r} changed meanwhile; check rollout_status and retry.")
        before = locked.as_record()
        model_version_activate(version=canary, actor=actor, reason=reason or f"promoted from rollout #{locked.pk}")
        _end(locked, state=ModelRollout.State.PROMOTED, actor=actor, reason=reason)
        generation_bump(kind=MODELS)
        _audit(
            actor=actor,
            action="model.rollout.promote",
            name=name,
            before=before,
            after=locked.as_record(),
            reason=reason,
            rollout_id=locked.pk,
            model_version=canary.version,
        )
    return locked


def rollout_rollback(
    *, name: str, actor: str, reason: str, rollout_id: int | None = None, figures: dict[str, Any] | None = None
) -> ModelRollout | ModelVersion | None:
    """End ``name``'s rollout (everyone back on stable), or with none active re-activate the previous version.

    A reason is required (it is the audit record's point).  ``rollout_id``
    makes it conditional (the automatic rollback): when that rollout is no
    longer the active one, nothing happens and ``None`` is returned.
    """
    reason = (reason or "").strip()[:REASON_MAX]
    if not reason:
        raise InvalidRollout("A rollback needs a reason; it is kept in the audit trail.")
    with transaction.atomic():
        _locked_versions(name)
        rollout = _active_rollout(name)
        if rollout_id is not None and (rollout is None or rollout.pk != rollout_id):
            return None
        if rollout is not None:
            before = rollout.as_record()
            _end(rollout, state=ModelRollout.State.ROLLED_BACK, actor=actor, reason=reason)
            generation_bump(kind=MODELS)
            extra: dict[str, Any] = {"rollout_id": rollout.pk}
            if figures is not None:
                extra["figures"] = figures
            _audit(
                actor=actor,
                action="model.rollout.rollback",
                name=name,
                before=before,
                after=rollout.as_record(),
                reason=reason,
                **extra,
            )
            return rollout
    if not ModelVersion.objects.filter(name=name).exists():
        raise RolloutNotFound(f"No model named {name!r}.")
    # No rollout in progress: undo the last activation (a promotion, typically).
    return model_version_rollback(name=name, actor=actor, reason=reason)


def rollouts_evaluate() -> list[ModelRollout]:
    """Roll back every active rollout whose canary or shadow crosses one of its thresholds; audited with why.

    Run by the beat task ``inference.rollouts_evaluate``.  Each rollback is
    conditional on the rollout still being the active one, so a promotion by
    an operator in the meantime is never undone by a late evaluation.
    """
    rolled_back: list[ModelRollout] = []
    for rollout in ModelRollout.objects.filter(state=ModelRollout.State.ACTIVE).order_by("pk"):
        figures = rollout_figures(rollout=rollout)
        reasons = rollout_thresholds_crossed(rollout=rollout, figures=figures)
        if not reasons:
            continue
        ended = rollout_rollback(
            name=rollout.name,
            actor=MONITOR_ACTOR,
            reason="automatic rollback: " + "; ".join(reasons),
            rollout_id=rollout.pk,
            figures={str(version): figure.as_dict() for version, figure in figures.items()},
        )
        if isinstance(ended, ModelRollout):
            logger.warning("rollout rolled back automatically", extra={"rollout": rollout.pk, "reasons": reasons})
            rolled_back.append(ended)
    return rolled_back
