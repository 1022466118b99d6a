"""Celery tasks of the supervision app: judge closed windows of live statistics.

``monitoring.windows_evaluate_due`` runs on the beat schedule and enqueues
``monitoring.window_evaluate`` per due window (``MONITORING_EVALUATE_INTERVAL_SECONDS``), which
judges one window by id (operators, tests).
``monitoring.incident_bundle_build`` builds one regulator bundle by id.  Both are idempotent: a window
has at most one result, and an evaluated window is skipped.
"""

from __future__ import annotations

from celery import shared_task

from monitoring.services import incident_bundle_build, window_evaluate, windows_evaluate_due


@shared_task(name="monitoring.windows_evaluate_due")
def windows_evaluate_due_task() -> int:
    """Enqueue a judgement of every window that closed (plus the grace period) and has no result yet."""
    return windows_evaluate_due(enqueue=True)


@shared_task(name="monitoring.window_evaluate")
def window_evaluate_task(window_id: int) -> str:
    """Judge one window by id; returns its status."""
    return window_evaluate(window_id=window_id).status


@shared_task(name="monitoring.incident_bundle_build", acks_late=True)
def incident_bundle_build_task(bundle_id: int) -> str:
    """Build one regulator bundle by id (idempotent); returns its status."""
    return incident_bundle_build(bundle_id=bundle_id).status
