"""Signed webhooks beyond quota crossings: alerts, incidents, kill switches, quota refusals, broker-outage recovery."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.db.models import F

from monitoring.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from monitoring.services import alert_close, incident_escalate, incident_kill_switch, incident_release
from monitoring.services.webhooks import SIGNATURE_HEADER, webhook_deliveries_recover, webhook_signature_valid
from policy.models import KillSwitch
from policy.services import kill_switch_engage, kill_switch_lift
from tests.monitoring.test_incidents import raise_alert
from tests.monitoring.test_webhooks import SECRET, Receiver, predict

pytestmark = pytest.mark.django_db

OPERATOR_KINDS = [k for k in WebhookEndpoint.Kind.values if k != "quota.threshold"]


@pytest.fixture
def receiver():
    server = Receiver([500])  # the first delivery fails once
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _fast_retries(settings):
    settings.WEBHOOK_BACKOFF_SECONDS = 0
    settings.WEBHOOK_MAX_ATTEMPTS = 3


@pytest.fixture
def eager_retries(celery_eager):
    from gateway.celery import app

    app.conf.task_eager_propagates = False
    yield
    app.conf.task_eager_propagates = True


def kinds_received(receiver: Receiver) -> list[str]:
    """Kinds of the deliveries the receiver accepted (2xx), each checked for a valid signature."""
    kinds = []
    for status, headers, body in receiver.received:
        assert webhook_signature_valid(
            secret=SECRET, header=headers[SIGNATURE_HEADER.lower()], body=body, now=time.time()
        )
        if status == 200:
            kinds.append(json.loads(body)["kind"])
    return kinds


def test_alert_incident_and_kill_switch_events_reach_the_operator_signed_exactly_once(
    profiled, receiver, eager_retries, django_capture_on_commit_callbacks
):
    WebhookEndpoint.objects.create(name="ops", url=receiver.url, secret=SECRET, kinds=OPERATOR_KINDS)
    # A tenant's endpoint never gets operator events, whatever kinds a row claims.
    WebhookEndpoint.objects.create(
        name="acme", url=receiver.url, secret=SECRET, tenant_slug="acme", kinds=WebhookEndpoint.Kind.values
    )
    with django_capture_on_commit_callbacks(execute=True):
        alert = raise_alert()
    assert [s for s, _, _ in receiver.received] == [500, 200]  # a first failed try, then delivered once
    first = json.loads(receiver.received[1][2])
    assert (first["kind"], first["data"]["alert_id"], first["data"]["model_name"]) == (
        "alert.opened",
        alert.pk,
        "digits",
    )
    with django_capture_on_commit_callbacks(execute=True):
        incident, _ = incident_escalate(alert=alert, severity="high", category="default", actor="s:ops")
        incident_escalate(alert=alert, severity="high", category="default", actor="s:ops")  # same incident
        switch = incident_kill_switch(incident=incident, actor="s:ops", reason="drift")
        incident_release(incident=incident, actor="s:ops", reason="rolled back")
        alert_close(alert=alert, actor="s:ops", note="fixed")
        kill_switch_lift(kill_switch=switch, actor="s:ops", reason="fixed")
    assert kinds_received(receiver) == [
        "alert.opened",
        "incident.opened",
        "kill_switch.engaged",
        "incident.released",
        "alert.closed",
        "kill_switch.lifted",
    ]
    engaged = next(json.loads(b) for _, _, b in receiver.received if b"kill_switch.engaged" in b)["data"]
    assert (engaged["kill_switch_id"], engaged["target_type"], engaged["target"]) == (switch.pk, "model", "digits")
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}
    assert not WebhookDelivery.objects.filter(endpoint__tenant_slug="acme").exists()


def test_a_refused_kill_switch_emits_nothing(receiver, eager_retries, django_capture_on_commit_callbacks):
    WebhookEndpoint.objects.create(name="ops", url=receiver.url, secret=SECRET, kinds=OPERATOR_KINDS)
    with django_capture_on_commit_callbacks(execute=True):
        kill_switch_engage(target_type="tenant", target="acme", reason="abuse", actor="s:ops")
        with pytest.raises(Exception, match="already engaged"):
            kill_switch_engage(target_type="tenant", target="acme", reason="again", actor="s:ops")
    assert kinds_received(receiver) == ["kill_switch.engaged"]
    assert KillSwitch.objects.count() == 1 and WebhookEvent.objects.count() == 1


@pytest.mark.embedded  # the refusal comes from the Redis or the database quota backend
def test_a_refused_request_sends_the_100_percent_event_once(
    client, digits, make_caller, celery_eager, django_capture_on_commit_callbacks
):
    caller = make_caller("acme", daily_instances=10)
    with django_capture_on_commit_callbacks(execute=True):
        assert predict(client, caller, 8).status_code == 200  # 80 % crossed
        refused = predict(client, caller, 3)  # would cross 100 %: refused, usage stays at 8
        assert refused.status_code == 429
        assert predict(client, caller, 3).status_code == 429  # refused again: no second event
        assert predict(client, caller, 2).status_code == 200  # reaches 100 % exactly: same event, not a new one
    events = {e.payload["threshold_percent"]: e.payload for e in WebhookEvent.objects.all()}
    assert sorted(events) == [80, 100]
    assert (events[100]["used"], events[100]["limit"], events[100]["refused"], events[100]["period"]) == (
        8,
        10,
        True,
        "daily",
    )


def test_the_recovery_task_resends_deliveries_a_broker_outage_left_pending(
    receiver, monkeypatch, settings, celery_eager, django_capture_on_commit_callbacks
):
    from kombu.exceptions import OperationalError

    from monitoring import tasks
    from monitoring.services.webhooks import webhook_event_emit

    settings.WEBHOOK_RECOVER_GRACE_SECONDS = 60
    receiver.statuses = []
    WebhookEndpoint.objects.create(name="ops", url=receiver.url, secret=SECRET, kinds=OPERATOR_KINDS)
    real_delay = tasks.webhook_deliver_task.delay

    def broker_down(*args, **kwargs):
        raise OperationalError("connection refused")

    def backdate() -> None:
        # Instead of waiting out the grace period.
        WebhookDelivery.objects.update(next_attempt_at=F("next_attempt_at") - timedelta(seconds=61))

    monkeypatch.setattr(tasks.webhook_deliver_task, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        webhook_event_emit(kind="alert.opened", dedupe_key="outage", tenant_slug="", payload={"x": 1})
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    assert webhook_deliveries_recover() == 0  # not overdue yet: a queued task may still run it
    backdate()
    assert webhook_deliveries_recover() == 0  # overdue, but the broker is still down: pushed forward
    monkeypatch.setattr(tasks.webhook_deliver_task, "delay", real_delay)
    assert webhook_deliveries_recover() == 0 and receiver.received == []  # pushed forward: not yet again
    backdate()
    assert tasks.webhook_deliveries_recover_task.delay().get() == 1  # the beat task, by its name's function
    assert webhook_deliveries_recover() == 0  # delivered: never again
    backdate()
    assert webhook_deliveries_recover() == 0
    assert kinds_received(receiver) == ["alert.opened"]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("delivered", 1, None)
    assert "monitoring.webhook_deliveries_recover" in {
        entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()
    }


def test_a_redirect_is_a_failed_attempt_never_followed():
    from monitoring.services.webhooks import DeliveryFailed, webhook_deliver, webhook_event_emit

    receiver = Receiver([302])  # a redirect could point the worker at a private address
    try:
        WebhookEndpoint.objects.create(name="ops", url=receiver.url, secret=SECRET, kinds=OPERATOR_KINDS)
        event = webhook_event_emit(kind="alert.opened", dedupe_key="redirect", tenant_slug="", payload={})
        with pytest.raises(DeliveryFailed):
            webhook_deliver(delivery_id=event.deliveries.get().pk)
        delivery = WebhookDelivery.objects.get()
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 302)
        assert delivery.next_attempt_at is not None and len(receiver.received) == 1
    finally:
        receiver.close()
