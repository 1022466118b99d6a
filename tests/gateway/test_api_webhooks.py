"""``/v1/webhooks``: a tenant's own quota webhooks -- registration, isolation, the delivery log, hostile input."""

from __future__ import annotations

import json
import socket
import time

import pytest

from audit.models import AuditEvent
from monitoring.models import WebhookDelivery, WebhookEndpoint
from monitoring.services.webhooks import SIGNATURE_HEADER, webhook_deliver, webhook_event_emit, webhook_signature_valid
from tests.monitoring.test_webhooks import Receiver, predict
from tests.support import assert_problem

pytestmark = pytest.mark.django_db


def register(client, caller, body, **extra):
    return client.post(
        "/v1/webhooks", data=json.dumps(body), content_type="application/json", **caller.headers, **extra
    )


@pytest.fixture
def loopback_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    settings.WEBHOOK_BACKOFF_SECONDS = 0


@pytest.mark.embedded  # the crossing comes from the Redis or the database quota backend
def test_a_tenant_registers_its_webhook_gets_its_quota_event_signed_and_reads_the_log(
    client, digits, make_caller, loopback_allowed, celery_eager, django_capture_on_commit_callbacks
):
    receiver = Receiver([])
    try:
        caller = make_caller("acme", daily_instances=10)
        created = register(client, caller, {"name": "quota", "url": receiver.url})
        assert created.status_code == 201, created.content
        body = created.json()
        secret, webhook_id = body.pop("secret"), body["id"]
        assert secret.startswith("whsec_") and len(secret) > 40
        assert created["Location"] == f"/v1/webhooks/{webhook_id}"
        assert (body["kinds"], body["url"], body["enabled"]) == (["quota.threshold"], receiver.url, True)
        event = AuditEvent.objects.get(action="webhooks.create")
        assert (event.tenant_slug, event.http_status, event.detail["webhook_id"]) == ("acme", 201, webhook_id)
        assert secret not in json.dumps(event.detail)  # the secret is shown once, never recorded
        listed = client.get("/v1/webhooks", **caller.headers).json()["webhooks"]
        assert listed == [body] and "secret" not in client.get(f"/v1/webhooks/{webhook_id}", **caller.headers).json()
        with django_capture_on_commit_callbacks(execute=True):
            assert predict(client, caller, 8).status_code == 200  # 80 % crossed
        ((status, headers, raw),) = receiver.received
        assert status == 200
        assert webhook_signature_valid(
            secret=secret, header=headers[SIGNATURE_HEADER.lower()], body=raw, now=time.time()
        )
        log = client.get(f"/v1/webhooks/{webhook_id}/deliveries", **caller.headers).json()["deliveries"]
        assert [(d["kind"], d["status"], d["attempts"], d["data"]["threshold_percent"]) for d in log] == [
            ("quota.threshold", "delivered", 1, 80)
        ]
        assert client.delete(f"/v1/webhooks/{webhook_id}", **caller.headers).status_code == 204
        assert_problem(client.get(f"/v1/webhooks/{webhook_id}", **caller.headers), 404, "webhook_not_found")
        assert AuditEvent.objects.get(action="webhooks.delete").detail["webhook_id"] == webhook_id
    finally:
        receiver.close()


def test_another_tenants_webhook_is_not_found_and_never_listed(client, make_caller, loopback_allowed):
    acme, globex = make_caller("acme"), make_caller("globex")
    webhook_id = register(client, acme, {"name": "a", "url": "https://hooks.example.com/a"}).json()["id"]
    for path in (f"/v1/webhooks/{webhook_id}", f"/v1/webhooks/{webhook_id}/deliveries"):
        assert_problem(client.get(path, **globex.headers), 404, "webhook_not_found")
    assert_problem(client.delete(f"/v1/webhooks/{webhook_id}", **globex.headers), 404, "webhook_not_found")
    assert client.get("/v1/webhooks", **globex.headers).json() == {"webhooks": []}
    for bad in ("abc", "-1", "99999999999999999999999", "1%00"):
        assert_problem(client.get(f"/v1/webhooks/{bad}", **acme.headers), 404, "webhook_not_found")
    assert WebhookEndpoint.objects.filter(pk=webhook_id).exists()
    no_scope = make_caller("initech", scopes=["predict"])
    assert_problem(client.get("/v1/webhooks", **no_scope.headers), 403, "insufficient_scope")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "http://hooks.example.com/x"}, "webhook_url_refused"),  # https only
        ({"url": "http://127.0.0.1:9/x"}, "webhook_url_refused"),  # loopback only where a setting allows it
        ({"url": "https://127.0.0.1/x"}, "webhook_url_refused"),
        ({"url": "https://169.254.169.254/latest/meta-data"}, "webhook_url_refused"),  # cloud metadata
        ({"url": "https://10.0.0.1/x"}, "webhook_url_refused"),
        ({"url": "https://[::1]/x"}, "webhook_url_refused"),
        ({"url": "https://[::ffff:127.0.0.1]/x"}, "webhook_url_refused"),
        ({"url": "https://0x7f.1/x"}, "webhook_url_refused"),  # legacy numeric forms of 127.0.0.1
        ({"url": "https://2130706433/x"}, "webhook_url_refused"),
        ({"url": "https://localhost/x"}, "webhook_url_refused"),
        ({"url": "https://intranet/x"}, "webhook_url_refused"),
        ({"url": "https://redis.internal/x"}, "webhook_url_refused"),
        ({"url": "https://user:pw@hooks.example.com/x"}, "webhook_url_refused"),
        ({"url": "https://hooks.example.com:99999/x"}, "webhook_url_refused"),
        ({"url": "file:///etc/passwd"}, "webhook_url_refused"),
        ({"url": "javascript:alert(1)"}, "webhook_url_refused"),
        ({"url": "https://hooks.example.com/a b"}, "webhook_url_refused"),
        ({"url": "https://hooks.example.com/" + "a" * 600}, "invalid_input"),
        ({"url": 5}, "invalid_input"),
        ({"name": "n" * 101}, "invalid_input"),
        ({"secret": "short"}, "invalid_input"),
        ({"secret": "s" * 201}, "invalid_input"),
        ({"kinds": ["alert.opened"]}, "invalid_input"),  # operator events are never a tenant's
        ({"kinds": ["kill_switch.engaged"]}, "invalid_input"),
        ({"tenant_slug": "globex"}, "invalid_input"),  # cannot register for another tenant
    ],
)
def test_hostile_registrations_are_refused(client, make_caller, body, code):
    caller = make_caller("acme")
    response = register(client, caller, {"name": "x", "url": "https://hooks.example.com/x"} | body)
    assert_problem(response, 400, code)
    assert not WebhookEndpoint.objects.exists()


def test_limits_size_and_media_type(client, make_caller, settings):
    settings.WEBHOOK_MAX_ENDPOINTS_PER_TENANT = 1
    caller = make_caller("acme")
    ok = register(client, caller, {"name": "x", "url": "https://hooks.example.com/x", "secret": "s" * 16})
    assert ok.status_code == 201 and ok.json()["secret"] == "s" * 16  # a supplied secret is kept
    assert_problem(
        register(client, caller, {"name": "y", "url": "https://hooks.example.com/y"}), 409, "webhook_limit_reached"
    )
    big = json.dumps({"name": "x" * 5000, "url": "https://hooks.example.com/x"})
    assert_problem(
        client.post("/v1/webhooks", data=big, content_type="application/json", **caller.headers),
        413,
        "payload_too_large",
    )
    assert_problem(
        client.post("/v1/webhooks", data="name=x", content_type="text/plain", **caller.headers),
        415,
        "unsupported_media_type",
    )
    assert WebhookEndpoint.objects.count() == 1


def test_a_name_that_resolves_to_a_private_address_is_never_sent_to(monkeypatch):
    WebhookEndpoint.objects.create(
        name="t", url="https://hooks.example.com/x", secret="s" * 16, tenant_slug="acme", kinds=["quota.threshold"]
    )
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [(socket.AF_INET, 1, 6, "", ("10.1.2.3", 443))])
    event = webhook_event_emit(kind="quota.threshold", dedupe_key="rebind", tenant_slug="acme", payload={})
    delivery = webhook_deliver(delivery_id=event.deliveries.get().pk)
    assert (delivery.status, delivery.attempts) == ("dead", 0)
    assert "10.1.2.3" in delivery.last_error and WebhookDelivery.objects.get().status == "dead"
