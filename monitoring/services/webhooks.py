"""Signed webhooks: quota thresholds, alerts, incidents and kill switches, delivered by Celery with retries.

Event kinds (``WebhookEndpoint.Kind``): ``quota.threshold``; ``alert.opened``,
``alert.closed``; ``incident.opened``, ``incident.reported``,
``incident.released``, ``incident.closed``; ``kill_switch.engaged``,
``kill_switch.lifted``.  Operator endpoints (no tenant) get every event of the
kinds they subscribe to; a tenant's endpoint only ever gets its own tenant's
``quota.threshold`` events.  The alert and incident services emit inside their
transaction; kill switches are emitted through ``policy.kill_switch_listeners``
(the policy app may not import this one).

Signing (the scheme Stripe and Slack use): each POST carries
``X-MaaS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``
and ``X-MaaS-Event-Id``; a receiver recomputes the HMAC over the timestamp and
the raw body, compares in constant time, and refuses old timestamps (replay).
The id lets it drop a redelivery it already processed.

Exactly once per occurrence: an event's ``dedupe_key`` (for a quota threshold:
tenant, period, period start, percent) is unique, so the request that crosses
80 % of the daily quota creates the event and every later one finds it.  The
check is arithmetic on the reservation the request already holds; the
database is touched only on a crossing (twice per tenant, period and quota
window at the default thresholds).

A quota refused outright (the request that would cross 100 % is refused, so
usage may stop just below the limit) also emits the 100 % event, with the same
dedupe key as a crossing: at most one per window either way.

Delivery: ``monitoring.webhook_deliver(delivery_id)`` POSTs once; a non-2xx
answer or a network error is recorded on the delivery (attempts, status code,
error) and retried with exponential backoff (``WEBHOOK_BACKOFF_SECONDS`` x
2^(attempt-1)) until ``WEBHOOK_MAX_ATTEMPTS``, when the delivery becomes a
dead letter that an operator can requeue from the admin.  A delivered
delivery is never sent again (the task is idempotent).  Each pending delivery
carries ``next_attempt_at``; when the broker was down at enqueue time the row
stays pending, and the beat task ``monitoring.webhook_deliveries_recover``
re-enqueues those whose attempt is overdue, resetting ``next_attempt_at`` to now
in the same locked update so two beat runs never enqueue one delivery twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core.queue import leave_for_recovery, task_enqueue
from monitoring.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from monitoring.services.webhook_endpoints import webhook_address_refusal

logger = logging.getLogger("monitoring.webhooks")

DELIVER_TASK = "monitoring.webhook_deliver"
SIGNATURE_HEADER = "X-MaaS-Signature"
EVENT_HEADER = "X-MaaS-Event-Id"
QUOTA_THRESHOLD = WebhookEndpoint.Kind.QUOTA_THRESHOLD
_COUNTER_PERIODS = ("daily", "monthly")


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def webhook_signature_valid(*, secret: str, header: str, body: bytes, now: float, tolerance: float = 300.0) -> bool:
    """What a receiver checks: the HMAC matches and the timestamp is within ``tolerance`` seconds."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    expected = webhook_signature(secret=secret, timestamp=timestamp, body=body)
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(expected, header)


def webhook_event_emit(*, kind: str, dedupe_key: str, tenant_slug: str, payload: dict[str, Any]) -> WebhookEvent | None:
    """Record an event once (``None`` if ``dedupe_key`` was seen) and queue a delivery per subscribed endpoint."""
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                kind=kind, dedupe_key=dedupe_key[:200], tenant_slug=tenant_slug, payload=payload
            )
            endpoints = WebhookEndpoint.objects.filter(enabled=True)
            if kind == QUOTA_THRESHOLD and tenant_slug:
                endpoints = endpoints.filter(Q(tenant_slug="") | Q(tenant_slug=tenant_slug))
            else:
                # Alerts, incidents and kill switches are the operator's: never sent to a tenant's endpoint.
                endpoints = endpoints.filter(tenant_slug="")
            now = timezone.now()
            deliveries = [
                WebhookDelivery.objects.create(event=event, endpoint=endpoint, next_attempt_at=now)
                for endpoint in endpoints
                if kind in (endpoint.kinds or [])
            ]
    except IntegrityError:
        return None  # another request crossed the same threshold first: that one notifies
    for delivery in deliveries:
        # Broker outage: the pending delivery stays in the log; the recovery beat task (or the admin) sends it later.
        transaction.on_commit(
            lambda pk=delivery.pk: task_enqueue(task=DELIVER_TASK, args=(pk,), on_broker_failure=leave_for_recovery)
        )
    return event


def quota_thresholds_notify(*, tenant_slug: str, units: int, reservation: Any) -> list[WebhookEvent]:
    """Emit a ``quota.threshold`` event for every tenant quota this reservation pushed across a threshold.

    ``reservation.policies`` hold each limit's state after admission; its
    counters' period starts are in ``reservation.charges`` (same order).
    """
    if units <= 0 or not reservation.charges:
        return []
    counters = [p for p in reservation.policies if p.name in _COUNTER_PERIODS]
    emitted = []
    for policy, charge in zip(counters, reservation.charges, strict=False):
        if policy.scope != "tenant" or policy.limit <= 0:
            continue
        used = policy.limit - policy.remaining
        before = used - units
        for percent in settings.QUOTA_WEBHOOK_THRESHOLDS:
            mark = policy.limit * percent / 100
            if before < mark <= used:
                event = _quota_event(
                    tenant_slug=tenant_slug,
                    period=charge.period,
                    period_start=charge.period_start.isoformat(),
                    percent=percent,
                    limit=policy.limit,
                    used=used,
                    refused=False,
                )
                if event is not None:
                    emitted.append(event)
    return emitted


def _quota_key(tenant_slug: str, period: str, period_start: str, percent: int) -> str:
    return f"quota:{tenant_slug}:{period}:{period_start}:{percent}"


def _quota_event(
    *, tenant_slug: str, period: str, period_start: str, percent: int, limit: int, used: int, refused: bool
) -> WebhookEvent | None:
    """One ``quota.threshold`` event; the key is the same whether a crossing or a refusal found it."""
    return webhook_event_emit(
        kind=QUOTA_THRESHOLD,
        dedupe_key=_quota_key(tenant_slug, period, period_start, percent),
        tenant_slug=tenant_slug,
        payload={
            "type": QUOTA_THRESHOLD,
            "tenant": tenant_slug,
            "period": period,
            "period_start": period_start,
            "threshold_percent": percent,
            "limit": limit,
            "used": used,
            "refused": refused,
            "occurred_at": timezone.now().isoformat(),
        },
    )


def quota_refusal_notify(*, tenant_slug: str, error: Any) -> WebhookEvent | None:
    """Emit the 100 % event when a tenant's daily or monthly quota refuses a request (``QuotaExceeded``).

    Usage can stop just below the limit (8 of 10 used, a batch of 3 refused):
    no request ever crossed 100 %, yet the tenant is now being refused, which
    is what the 100 % notification is for.  The highest configured threshold
    at or above 100 is the one sent; the dedupe key makes it once per window.
    """
    extra = getattr(error, "extra", {}) or {}
    period, start = extra.get("limit"), extra.get("period_start")
    marks = [p for p in settings.QUOTA_WEBHOOK_THRESHOLDS if p >= 100]
    if extra.get("scope") != "tenant" or period not in _COUNTER_PERIODS or not start or not marks:
        return None
    percent = min(marks)
    if WebhookEvent.objects.filter(dedupe_key=_quota_key(tenant_slug, str(period), str(start), percent)).exists():
        # A refused tenant may keep retrying: one indexed read each, not a failing insert.
        return None
    return _quota_event(
        tenant_slug=tenant_slug,
        period=str(period),
        period_start=str(start),
        percent=percent,
        limit=int(extra.get("quota") or 0),
        used=int(extra.get("used") or 0),
        refused=True,
    )


def webhook_alert_event(*, alert: Any, kind: str, actor: str) -> WebhookEvent | None:
    """Emit ``alert.opened`` / ``alert.closed`` for ``alert`` (once per alert and kind)."""
    version = alert.model_version
    return webhook_event_emit(
        kind=kind,
        dedupe_key=f"{kind}:{alert.pk}",
        tenant_slug="",
        payload={
            "type": kind,
            "alert_id": alert.pk,
            "model_name": version.name,
            "model_version": version.version,
            "rule_id": alert.rule_id,
            "status": alert.status,
            "measures": alert.measures,
            "actor": actor,
            "occurred_at": timezone.now().isoformat(),
        },
    )


def webhook_incident_event(*, incident: Any, kind: str, actor: str) -> WebhookEvent | None:
    """Emit an ``incident.*`` event for ``incident`` (once per incident and kind)."""
    return webhook_event_emit(
        kind=kind,
        dedupe_key=f"{kind}:{incident.pk}",
        tenant_slug="",
        payload={
            "type": kind,
            "incident_id": incident.pk,
            "model_name": incident.model_name,
            "model_version": incident.model_version.version,
            "title": incident.title,
            "severity": incident.severity,
            "category": incident.category,
            "status": incident.status,
            "deadline": incident.deadline.isoformat(),
            "authority_reference": incident.authority_reference,
            "alert_id": incident.alert_id,
            "actor": actor,
            "occurred_at": timezone.now().isoformat(),
        },
    )


def kill_switch_webhook_emit(*, kill_switch: Any, action: str, actor: str) -> None:
    """The kill-switch listener (``policy.kill_switch_listeners``): ``kill_switch.engaged`` / ``.lifted``."""
    kind = f"kill_switch.{action}"
    webhook_event_emit(
        kind=kind,
        dedupe_key=f"{kind}:{kill_switch.pk}",
        tenant_slug="",
        payload={
            "type": kind,
            "kill_switch_id": kill_switch.pk,
            "target_type": kill_switch.target_type,
            "target": kill_switch.target,
            "reason": kill_switch.lift_reason if action == "lifted" else kill_switch.reason,
            "actor": actor,
            "occurred_at": timezone.now().isoformat(),
        },
    )


class _RedirectRefused(urllib.request.HTTPRedirectHandler):
    """A receiver's redirect is not followed: it could point the worker at a private address (SSRF)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx code: a failed attempt


_OPENER = urllib.request.build_opener(_RedirectRefused)


class DeliveryFailed(Exception):
    """One attempt did not get a 2xx answer; the task retries it later."""


def webhook_backoff_seconds(attempts: int) -> float:
    """Delay before the next attempt after ``attempts`` failed ones."""
    return float(settings.WEBHOOK_BACKOFF_SECONDS) * (2 ** max(0, attempts - 1))


def webhook_deliver(*, delivery_id: int) -> WebhookDelivery:
    """Make one attempt; ``DeliveryFailed`` when it should be retried (a dead letter is returned, not raised)."""
    delivery = WebhookDelivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
    if delivery.status != WebhookDelivery.Status.PENDING:
        return delivery  # delivered or dead: never sent again by a duplicate task
    body = json.dumps(
        {"id": str(delivery.event.pk), "kind": delivery.event.kind, "data": delivery.event.payload},
        sort_keys=True,
        separators=(",", ":"),
    ).encode("utf-8")
    timestamp = int(time.time())
    refusal = ""
    if not delivery.endpoint.url.lower().startswith(("http://", "https://")):
        # Never file:, ftp: or custom schemes that urllib would also open.
        refusal = "URL scheme is not http or https"
    elif delivery.endpoint.tenant_slug:
        # A tenant's URL: resolved now, so a name re-pointed at a private address is never sent to (SSRF).
        refusal = webhook_address_refusal(delivery.endpoint.url)
    if refusal:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.DEAD,
            last_error=refusal[:500],
            last_attempt_at=timezone.now(),
            next_attempt_at=None,
        )
        delivery.refresh_from_db()
        return delivery
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        delivery.endpoint.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: webhook_signature(secret=delivery.endpoint.secret, timestamp=timestamp, body=body),
            EVENT_HEADER: str(delivery.event.pk),
            "User-Agent": "maas-webhooks/1",
        },
    )
    code: int | None = None
    error = ""
    try:
        with _OPENER.open(request, timeout=float(settings.WEBHOOK_TIMEOUT_SECONDS)) as response:
            code = response.status
    except urllib.error.HTTPError as exc:
        code, error = exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    ok = code is not None and 200 <= code < 300
    attempts = delivery.attempts + 1
    if ok:
        status = WebhookDelivery.Status.DELIVERED
    elif attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        status = WebhookDelivery.Status.DEAD
    else:
        status = WebhookDelivery.Status.PENDING
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=attempts,
        status=status,
        last_status_code=code,
        last_error=error,
        last_attempt_at=now,
        delivered_at=now if ok else None,
        next_attempt_at=(
            now + timedelta(seconds=webhook_backoff_seconds(attempts))
            if status == WebhookDelivery.Status.PENDING
            else None
        ),
    )
    delivery.refresh_from_db()
    if status == WebhookDelivery.Status.DEAD:
        logger.warning("webhook dead-lettered", extra={"delivery_id": delivery.pk, "error": error})
    if status == WebhookDelivery.Status.PENDING:
        raise DeliveryFailed(error or f"HTTP {code}")
    return delivery


def webhook_delivery_requeue(*, delivery: WebhookDelivery) -> bool:
    """Put a dead (or stuck pending) delivery back on the queue with a fresh attempt budget."""
    if delivery.status == WebhookDelivery.Status.DELIVERED:
        return False
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.PENDING, attempts=0, next_attempt_at=timezone.now()
    )
    return task_enqueue(task=DELIVER_TASK, args=(delivery.pk,), on_broker_failure=leave_for_recovery)


def webhook_deliveries_recover(*, limit: int = 500) -> int:
    """Re-enqueue pending deliveries whose next attempt is overdue (left behind by a broker outage).

    A delivery is overdue once ``next_attempt_at`` plus ``WEBHOOK_RECOVER_GRACE_SECONDS``
    has passed: the grace leaves a normally queued task (or a Celery retry
    countdown) time to run first.  The rows are claimed under a row lock and
    their ``next_attempt_at`` set to now before enqueueing, so an overlapping
    run skips them for another grace period; the delivery task itself refuses to send
    a delivered or dead one.  Returns how many were enqueued.
    """
    now = timezone.now()
    grace = timedelta(seconds=float(settings.WEBHOOK_RECOVER_GRACE_SECONDS))
    with transaction.atomic():
        due = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=WebhookDelivery.Status.PENDING)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now - grace))
            .order_by("pk")
            .values_list("pk", flat=True)[:limit]
        )
        # The claimed attempt is "now": overdue again only after another grace period.
        WebhookDelivery.objects.filter(pk__in=due).update(next_attempt_at=now)
    enqueued = 0
    for pk in due:
        if task_enqueue(task=DELIVER_TASK, args=(pk,), on_broker_failure=leave_for_recovery):
            enqueued += 1
    return enqueued
