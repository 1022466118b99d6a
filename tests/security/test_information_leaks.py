"""Issue 13, item 9: public endpoints reveal no internals.

``/readyz`` named backend types, the audit key id and the model checksum to
anyone; unauthenticated ``OPTIONS`` described every DRF view.  Now the public
readiness answer is only ready or not ready (details for staff or the
``METRICS_TOKEN`` bearer), and ``OPTIONS`` metadata is off.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

TOKEN = "ops-readiness-token"


def test_public_readyz_says_only_ready(client, settings, digits):
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/readyz")
    assert response.status_code == 200
    assert set(response.json()) == {"status", "request_id"} and response.json()["status"] == "ok"


def test_public_readyz_names_no_failed_dependency(client, settings, monkeypatch):
    from core import health

    def broken():
        raise ConnectionError("redis://10.0.0.7:6379 refused")

    monkeypatch.setitem(health._checks, "cache", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "checks" not in response.json() and "10.0.0.7" not in response.content.decode()
    assert "cache" not in response.json()["detail"]


@pytest.mark.parametrize("who", ["token", "staff"])
def test_operators_see_the_report(client, settings, who):
    settings.METRICS_TOKEN = TOKEN
    headers = {}
    if who == "token":
        headers["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    else:
        staff = get_user_model().objects.create_user("ops", password="x-long-password-1", is_staff=True)
        client.force_login(staff)
    body = client.get("/readyz", **headers).json()
    assert body["checks"]["database"]["status"] == "ok"


def test_a_wrong_token_sees_no_report(client, settings):
    settings.METRICS_TOKEN = TOKEN
    assert "checks" not in client.get("/readyz", HTTP_AUTHORIZATION="Bearer wrong").json()


@pytest.mark.parametrize("path", ["/v1/models", "/v1/jobs", "/v1/usage", "/v1/audit/public-key"])
def test_options_reveals_no_view_metadata(client, path):
    response = client.options(path)
    assert response.status_code in (401, 405), response.content
    assert b"renders" not in response.content and b"parses" not in response.content
    assert b"actions" not in response.content
