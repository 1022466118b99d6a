"""Issue 13, item 6: failed authentication is throttled per client address and floods are aggregated.

Every 401 used to become a permanent audit row, unthrottled (1,200 rows from
a short loop).  Now, per address and window: past ``AUTH_FAILURE_LIMIT``
failures the answer is 429 ``authentication_throttled`` with
``Retry-After``; the first ``AUTH_FAILURE_VERBATIM`` failures are audited
verbatim and the rest summed into one aggregated ``auth.flood`` event.
The clock is injected: no test waits for a minute to pass.
"""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from tenants.services import auth_failures
from tenants.services.auth_failures import auth_floods_flush
from tests.support import assert_problem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

WINDOW_START = 1_800_000_000  # a multiple of 60: the start of a window
ATTACKER = "203.0.113.9"


@pytest.fixture
def limits(settings, monkeypatch):
    """Production-like limits, a frozen clock 5 s into a window, and no counters left from other tests."""
    settings.AUTH_FAILURE_LIMIT = 15
    settings.AUTH_FAILURE_VERBATIM = 10
    now = {"t": WINDOW_START + 5.0}
    monkeypatch.setattr(auth_failures, "clock", lambda: now["t"])
    if settings.REDIS_URL:
        from core.redis import redis_client

        redis_client().flushdb()
    return now


def _bad(client, address=ATTACKER, path="/v1/models"):
    return client.get(
        path, HTTP_AUTHORIZATION="Bearer maas_abcdefghjkmn.not-the-right-secret-at-all", REMOTE_ADDR=address
    )


def test_a_flood_is_throttled_and_recorded_as_first_rows_plus_one_aggregate(client, limits, make_caller, digits):
    answers = [_bad(client) for _ in range(40)]
    assert {r.status_code for r in answers[:15]} == {401}
    for refused in answers[15:]:
        assert_problem(refused, 429, "authentication_throttled")
        assert refused["Retry-After"] == "55"
    rows = AuditEvent.objects.filter(client_ip=ATTACKER, event_type="request")
    assert rows.count() == 10
    assert set(rows.values_list("request_id", flat=True)) == {r["X-Request-ID"] for r in answers[:10]}

    assert auth_floods_flush(now=WINDOW_START + 30) == 0  # the window is still open
    assert auth_floods_flush(now=WINDOW_START + 61) == 1
    flood = AuditEvent.objects.get(action="auth.flood")
    assert flood.client_ip == ATTACKER and flood.error_code == "auth_flood"
    assert flood.detail["failures"] == 40
    assert flood.detail["recorded_verbatim"] == 10 and flood.detail["aggregated"] == 30
    assert flood.detail["window_start"] == WINDOW_START
    assert auth_floods_flush(now=WINDOW_START + 120) == 0  # claimed once, recorded once

    # Next window: the address may try again, and is audited verbatim again.
    limits["t"] = WINDOW_START + 65
    assert _bad(client).status_code == 401


def test_other_addresses_and_valid_keys_are_unaffected(client, limits, make_caller, digits):
    caller = make_caller()
    for _ in range(20):
        _bad(client)
    assert _bad(client).status_code == 429
    assert _bad(client, address="198.51.100.1").status_code == 401
    ok = client.get("/v1/models", REMOTE_ADDR=ATTACKER, **caller.headers)
    assert ok.status_code == 200


def test_drf_endpoints_are_throttled_too(client, limits):
    answers = [_bad(client, path="/v1/usage").status_code for _ in range(16)]
    assert answers[:15] == [401] * 15 and answers[15] == 429


def test_a_small_burst_leaves_no_aggregate(client, limits):
    for _ in range(10):
        assert _bad(client).status_code == 401
    assert AuditEvent.objects.filter(client_ip=ATTACKER).count() == 10
    assert auth_floods_flush(now=WINDOW_START + 61) == 0
