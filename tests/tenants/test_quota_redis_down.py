"""Redis unreachable: fail closed (503) by default, fail open when configured; recovery without stuck state."""

from __future__ import annotations

import json

import pytest

from core.errors import exception_to_response
from core.logging import request_context_reset, set_request_context
from core.redis import redis_reset
from tenants.errors import QuotaBackendUnavailable, QuotaExceeded
from tenants.selectors import quota_usage_current
from tenants.services import api_key_authenticate, quota_refund, quota_reserve
from tests.fixtures.factories import PlanFactory, TenantFactory
from tests.fixtures.tenants import issue_key
from tests.support import assert_problem, free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def principal(db):
    tenant = TenantFactory(plan=PlanFactory(daily_instances=2, rate_per_second=100.0, burst=10))
    return api_key_authenticate(raw_key=issue_key(tenant).raw_key)


@pytest.fixture
def redis_down(settings):
    """Point the quota backend at a closed loopback port."""
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    redis_reset()
    yield
    redis_reset()


@pytest.mark.embedded
def test_fails_closed_with_503_by_default(principal, redis_down, settings):
    settings.QUOTA_FAIL_OPEN = False
    # The problem names the request it answers: bind one, as the middleware does (it used to leak from
    # the previous test, so this passed only after another test; issue 13).
    set_request_context(request_id="quota-down-request")
    try:
        with pytest.raises(QuotaBackendUnavailable) as info:
            quota_reserve(principal=principal, units=1)
        response = exception_to_response(info.value)
    finally:
        request_context_reset()
    response.json = lambda: json.loads(response.content)  # what the test client adds to its responses
    assert assert_problem(response, 503, "quota_backend_unavailable")["request_id"] == "quota-down-request"
    assert response["Retry-After"] == "1"


@pytest.mark.embedded
def test_fails_open_when_configured_and_flags_the_reservation(principal, redis_down, settings):
    settings.QUOTA_FAIL_OPEN = True
    reservations = [quota_reserve(principal=principal, units=1) for _ in range(5)]  # beyond the quota of 2
    assert all(r.fail_open for r in reservations)
    assert reservations[0].headers() == {}
    assert reservations[0].charged_units == 1  # still counted in the durable record
    quota_refund(reservation=reservations[0])  # nothing to give back, and no exception


@pytest.mark.embedded
def test_usage_read_falls_back_to_the_durable_record(principal, redis_down):
    usage = quota_usage_current(scopes=principal.effective_quota_scopes())
    assert {u.period for u in usage} == {"daily", "monthly"}
    assert all(u.used == 0 for u in usage)


def test_enforcement_resumes_when_redis_is_back(principal, redis_clean, settings):
    working_url = settings.REDIS_URL
    settings.QUOTA_FAIL_OPEN = True
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    redis_reset()
    assert quota_reserve(principal=principal, units=1).fail_open
    settings.REDIS_URL = working_url
    redis_reset()
    quota_reserve(principal=principal, units=2)
    with pytest.raises(QuotaExceeded):
        quota_reserve(principal=principal, units=1)
    settings.QUOTA_FAIL_OPEN = False
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    redis_reset()
    with pytest.raises(QuotaBackendUnavailable):
        quota_reserve(principal=principal, units=1)
    settings.REDIS_URL = working_url
    redis_reset()
    with pytest.raises(QuotaExceeded):
        quota_reserve(principal=principal, units=1)
