"""Rollout routing on the hot path: which version answers a caller, and which shadows run.

A model under an active :class:`inference.models.ModelRollout` is served by
its active (stable) version, except that a sticky share of callers gets the
canary: the caller's bucket is ``sha256("<rollout id>:<key prefix>")`` read
as a number modulo 10,000, and the canary answers when the bucket is below
``canary_percent`` x 100.  The same key therefore lands on the same version
for the whole rollout (in every process and on every host, since nothing but
the id and the prefix goes in), a ramp from 10 % to 20 % keeps the first 10 %
on the canary, and a new rollout reshuffles.

Readiness gate: a canary or shadow receives traffic in a process only once
that process holds a verified, loaded session for it.  Until then the stable
version answers (never a 503) and a per-process background thread loads the
session; a file that fails verification is never loaded, so it never gets
traffic.  Loading in the request would put a file hash and a session build
(tens of milliseconds) into the latency of whichever caller came first.

The plan of each model is cached in the ``models`` :class:`LocalCache`, so
every process sees a new, changed or ended rollout within about a second and
a request pays a dictionary lookup when no rollout is active.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from inference.models import ModelRollout, ModelVersion
from inference.runtime import ModelLoadError, ModelSpec, ServedModel, sessions
from inference.selectors import _runtime_options, _specs, model_spec_from_row

logger = logging.getLogger("inference.routing")

#: Buckets a caller can fall into; a percentage maps to ``percent * BUCKETS / 100`` of them.
BUCKETS = 10_000

ARM_STABLE = "stable"
ARM_CANARY = "canary"
ARM_PINNED = "pinned"


@dataclass(frozen=True)
class RolloutPlan:
    """What the hot path needs of an active rollout (immutable, shared by threads)."""

    id: int
    name: str
    canary_version: int | None
    canary_buckets: int
    shadow_versions: tuple[int, ...]


def canary_buckets(percent: float) -> int:
    """How many of the :data:`BUCKETS` a canary at ``percent`` takes (rounded, 0..BUCKETS)."""
    return max(0, min(BUCKETS, round(percent * BUCKETS / 100)))


def rollout_bucket(*, rollout_id: int, key_prefix: str) -> int:
    """The caller's bucket in a rollout: stable for the key and rollout, uniform over keys."""
    digest = hashlib.sha256(f"{rollout_id}:{key_prefix}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def rollout_arm(*, plan: RolloutPlan, key_prefix: str) -> str:
    """``canary`` or ``stable`` for this key in ``plan`` (before policy and readiness)."""
    if plan.canary_version is None:
        return ARM_STABLE
    return ARM_CANARY if rollout_bucket(rollout_id=plan.id, key_prefix=key_prefix) < plan.canary_buckets else ARM_STABLE


class _NoRollout:
    """Cached negative answer: the name has no active rollout."""


_NONE = _NoRollout()


def _load_plan(name: str) -> RolloutPlan | _NoRollout:
    row = ModelRollout.objects.filter(name=name, state=ModelRollout.State.ACTIVE).first()
    if row is None:
        return _NONE
    return RolloutPlan(
        id=row.pk,
        name=row.name,
        canary_version=row.canary_version,
        canary_buckets=canary_buckets(row.canary_percent) if row.canary_version is not None else 0,
        shadow_versions=tuple(int(v) for v in row.shadow_versions),
    )


def rollout_plan_get(*, name: str) -> RolloutPlan | None:
    """The active rollout of ``name`` as this process sees it (cached; ``None`` without one)."""
    plan = _specs.get_or_load(("rollout", name), lambda: _load_plan(name))
    return None if isinstance(plan, _NoRollout) else plan


def _load_rollout_spec(name: str, version: int) -> ModelSpec | None:
    # Any version but a retired one: a canary or shadow is usually staged, never activated.
    row = ModelVersion.objects.filter(name=name, version=version).exclude(status=ModelVersion.Status.RETIRED).first()
    return model_spec_from_row(row) if row is not None else None


# --- the readiness gate ------------------------------------------------------------

_warm_lock = threading.Lock()
_warming: set[tuple[str, int, str]] = set()
_warm_pool: ThreadPoolExecutor | None = None
_warm_pid: int | None = None


def _pool() -> ThreadPoolExecutor:
    # One thread per process, created lazily: gunicorn forks after import, and a
    # thread started before the fork would not exist in the worker.
    global _warm_pool, _warm_pid
    if _warm_pool is None or _warm_pid != os.getpid():
        _warm_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollout-warm")
        _warm_pid = os.getpid()
        _warming.clear()
    return _warm_pool


def _warm(spec: ModelSpec, options: dict) -> None:
    try:
        sessions.get(spec, **options)
    except ModelLoadError as exc:
        # Remembered by the session registry for a few seconds; meanwhile stable keeps answering.
        if exc.fresh:
            logger.error(
                "rollout version refused; it receives no traffic", extra={"model": exc.ref, "reason": exc.reason}
            )
    finally:
        with _warm_lock:
            _warming.discard((spec.name, spec.version, spec.sha256))


def ready_model(*, name: str, version: int, wait: bool = False) -> ServedModel | None:
    """The loaded session of a rollout version, or ``None`` (and a background load) while it is not ready.

    ``wait=True`` loads in the calling thread instead (commands, tests); a
    version that fails verification is ``None`` either way.
    """
    spec = _specs.get_or_load(("rollout-version", name, version), lambda: _load_rollout_spec(name, version))
    if spec is None:
        return None
    model = sessions.cached(spec)
    if model is not None:
        return model
    options = _runtime_options()
    if wait:
        try:
            return sessions.get(spec, **options)
        except ModelLoadError:
            return None
    key = (spec.name, spec.version, spec.sha256)
    with _warm_lock:
        if key in _warming:
            return None
        _warming.add(key)
        pool = _pool()
    pool.submit(_warm, spec, options)
    return None


def rollout_versions_warm(*, name: str) -> dict[int, bool]:
    """Load every canary and shadow session of ``name``'s rollout in this process now; version -> ready."""
    plan = rollout_plan_get(name=name)
    if plan is None:
        return {}
    versions = ([plan.canary_version] if plan.canary_version is not None else []) + list(plan.shadow_versions)
    return {v: ready_model(name=name, version=v, wait=True) is not None for v in versions}
