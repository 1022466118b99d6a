"""Celery tasks of the supervision app: judge closed windows of live statistics.

``monitoring.windows_evaluate_due`` runs on the beat schedule and enqueues
``monitoring.window_evaluate`` per due window (``MONITORING_EVALUATE_INTERVAL_SECONDS``), which
judges one window by id (operators, tests).
``monitoring.incident_bundle_build`` builds one regulator bundle by id; ``monitoring.webhook_deliver``
sends one webhook delivery (retried with backoff, then dead-lettered);
``monitoring.webhook_deliveries_recover`` (beat) re-enqueues deliveries a broker outage left pending.
All are idempotent: a window has at most one result, and an evaluated window is skipped.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from monitoring.models import WebhookDelivery
from monitoring.services import incident_bundle_build, window_evaluate, windows_evaluate_due
from monitoring.services.webhooks import (
    DeliveryFailed,
    webhook_backoff_seconds,
    webhook_deliver,
    webhook_deliveries_recover,
)


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


@shared_task(name="monitoring.webhook_deliver", bind=True, acks_late=True, max_retries=None)
def webhook_deliver_task(self: Any, delivery_id: int) -> str:
    """One delivery attempt by id; a failed one is retried with exponential backoff until dead-lettered."""
    try:
        return webhook_deliver(delivery_id=delivery_id).status
    except DeliveryFailed as exc:
        attempts = WebhookDelivery.objects.filter(pk=delivery_id).values_list("attempts", flat=True).first() or 1
        raise self.retry(exc=exc, countdown=webhook_backoff_seconds(attempts)) from exc


@shared_task(name="monitoring.webhook_deliveries_recover")
def webhook_deliveries_recover_task() -> int:
    """Re-enqueue overdue pending webhook deliveries (idempotent: claimed rows are pushed forward)."""
    return webhook_deliveries_recover()
