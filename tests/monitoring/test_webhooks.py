"""Signed quota-threshold webhooks: a local receiver gets each crossing exactly once despite a failed first try."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse

from monitoring.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from monitoring.services.webhooks import SIGNATURE_HEADER, webhook_signature_valid

# embedded: the thresholds are read from the Redis or the database quota backend's reservation.
pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

SECRET = "receiver-secret-0123456789"


class Receiver:
    """A local HTTP receiver answering from a script of status codes (then 200), keeping what it got."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.received: list[tuple[int, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.received.append((status, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(request) -> Iterator[Receiver]:
    server = Receiver(getattr(request, "param", [500]))
    yield server
    server.close()


def predict(client, caller, n):
    body = json.dumps({"instances": [[0.0] * 64] * n, "purpose": "research"})
    return client.post("/v1/models/digits/predict", data=body, content_type="application/json", **caller.headers)


@pytest.fixture(autouse=True)
def _fast_retries(settings):
    settings.WEBHOOK_BACKOFF_SECONDS = 0
    settings.WEBHOOK_MAX_ATTEMPTS = 3


@pytest.fixture
def eager_retries(celery_eager):
    """Eager tasks whose ``self.retry`` runs the retry inline (propagating would raise ``Retry`` instead)."""
    from gateway.celery import app

    app.conf.task_eager_propagates = False
    yield
    app.conf.task_eager_propagates = True


def test_a_crossing_is_delivered_signed_exactly_once_despite_a_failed_first_try(
    client, digits, make_caller, receiver, eager_retries, django_capture_on_commit_callbacks
):
    WebhookEndpoint.objects.create(name="ops", url=receiver.url, secret=SECRET, kinds=["quota.threshold"])
    WebhookEndpoint.objects.create(
        name="other tenant", url=receiver.url, secret=SECRET, tenant_slug="globex", kinds=["quota.threshold"]
    )
    caller = make_caller("acme", daily_instances=10)
    with django_capture_on_commit_callbacks(execute=True):
        assert predict(client, caller, 7).status_code == 200  # 70 %: nothing
        assert predict(client, caller, 1).status_code == 200  # 80 % crossed
        assert predict(client, caller, 1).status_code == 200  # 90 %: already notified
    assert [status for status, _, _ in receiver.received] == [500, 200]
    (_, headers, body), (_, headers2, body2) = receiver.received
    assert body == body2 and headers["x-maas-event-id"] == headers2["x-maas-event-id"]
    assert webhook_signature_valid(
        secret=SECRET, header=headers2[SIGNATURE_HEADER.lower()], body=body2, now=time.time()
    )
    assert not webhook_signature_valid(
        secret="wrong", header=headers2[SIGNATURE_HEADER.lower()], body=body2, now=time.time()
    )
    assert not webhook_signature_valid(
        secret=SECRET, header=headers2[SIGNATURE_HEADER.lower()], body=body2, now=time.time() + 3600
    )  # a replayed old delivery
    data = json.loads(body2)["data"]
    assert (data["tenant"], data["period"], data["threshold_percent"], data["used"], data["limit"]) == (
        "acme",
        "daily",
        80,
        8,
        10,
    )
    delivery = WebhookDelivery.objects.get()  # the globex endpoint never sees acme's event
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 2, 200)
    with django_capture_on_commit_callbacks(execute=True):
        assert predict(client, caller, 1).status_code == 200  # 100 %
        assert predict(client, caller, 1).status_code == 429
    assert sorted(WebhookEvent.objects.values_list("payload__threshold_percent", flat=True)) == [80, 100]


@pytest.mark.parametrize("receiver", [[500, 502, 503, 500]], indirect=True)
def test_exhausted_retries_dead_letter_and_the_admin_requeues(
    client, digits, make_caller, receiver, eager_retries, django_capture_on_commit_callbacks, admin_client
):
    WebhookEndpoint.objects.create(name="ops", url=receiver.url, secret=SECRET, kinds=["quota.threshold"])
    caller = make_caller("acme", daily_instances=10)
    with django_capture_on_commit_callbacks(execute=True):
        assert predict(client, caller, 9).status_code == 200
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("dead", 3, 503)
    changelist = reverse("admin:monitoring_webhookdelivery_changelist")
    assert "Dead letter" in admin_client.get(f"{changelist}?status=dead").content.decode()
    admin_client.post(changelist, {"action": "requeue", "_selected_action": [delivery.pk]})
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)  # 500, then 200
    assert len(receiver.received) == 5
    assert admin_client.get(reverse("admin:monitoring_webhookendpoint_add")).status_code == 200


def test_hostile_endpoints_are_refused(admin_client, celery_eager):
    from monitoring.services.webhooks import webhook_deliver, webhook_event_emit

    WebhookEndpoint.objects.create(
        name="local file", url="file:///etc/passwd", secret=SECRET, kinds=["quota.threshold"]
    )
    event = webhook_event_emit(kind="quota.threshold", dedupe_key="k1", tenant_slug="acme", payload={"x": 1})
    assert webhook_event_emit(kind="quota.threshold", dedupe_key="k1", tenant_slug="acme", payload={}) is None
    delivery = webhook_deliver(delivery_id=event.deliveries.get().pk)
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("dead", 0, "URL scheme is not http or https")
    add = reverse("admin:monitoring_webhookendpoint_add")
    data = {"name": "x", "url": "https://hooks.example/x", "secret": "short", "kinds": ["quota.threshold"]}
    page = admin_client.post(add, {**data, "enabled": "on"})
    assert page.status_code == 200 and "at least 16 characters" in page.content.decode()
    assert not WebhookEndpoint.objects.filter(name="x").exists()
