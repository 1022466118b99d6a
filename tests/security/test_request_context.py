"""Issue 13, item 11: the request id and tenant never leak from one request or task into the next."""

from __future__ import annotations

import pytest

from core.logging import current_request_id, current_tenant_slug, set_request_context
from gateway.celery import app as celery_app

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@celery_app.task(name="tests.security.context_probe")
def context_probe() -> list[str]:
    """What a task sees of the log context while it runs."""
    return [current_request_id(), current_tenant_slug()]


def test_a_request_leaves_no_request_id_behind(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="first-request-0001")
    assert response["X-Request-ID"] == "first-request-0001"
    assert current_request_id() == ""
    assert current_tenant_slug() == ""


def test_a_failing_request_leaves_no_request_id_behind(client):
    response = client.get("/v1/models", HTTP_AUTHORIZATION="Bearer not-a-key", HTTP_X_REQUEST_ID="failing-00000001")
    assert response.status_code == 401
    assert current_request_id() == ""


def test_a_task_starts_and_ends_with_a_clean_context(celery_eager):
    set_request_context(request_id="left-over-request", tenant="left-over-tenant")
    seen = context_probe.delay().get()
    assert seen == ["", ""]
    assert current_request_id() == "" and current_tenant_slug() == ""
