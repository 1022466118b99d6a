"""Revocation and suspension reach every gateway process within 2 seconds (real gunicorn workers)."""

from __future__ import annotations

import time

import pytest
import requests

from tenants.services import api_key_revoke, tenant_suspend
from tests.fixtures.factories import PlanFactory, TenantFactory
from tests.fixtures.tenants import issue_key
from tests.support import gateway_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.slow, pytest.mark.embedded]

PROPAGATION_BOUND_SECONDS = 2.0


def _codes(base: str, raw_key: str, count: int) -> list[tuple[int, str]]:
    session = requests.Session()
    out = []
    for _ in range(count):
        # A fresh connection each time, so that the requests spread over the workers.
        response = session.get(
            f"{base}/v1/usage", headers={"Authorization": f"Bearer {raw_key}", "Connection": "close"}, timeout=10
        )
        out.append((response.status_code, response.json().get("code", "") if response.status_code != 200 else ""))
    return out


def test_revocation_and_suspension_reach_every_worker(settings):
    revoked_tenant = TenantFactory(plan=PlanFactory())
    suspended_tenant = TenantFactory(plan=PlanFactory())
    to_revoke = issue_key(revoked_tenant, scopes=["usage:read"])
    to_suspend = issue_key(suspended_tenant, scopes=["usage:read"])
    with gateway_server(workers=2, REDIS_URL=settings.REDIS_URL) as base:
        # Warm every worker's key cache.
        assert set(_codes(base, to_revoke.raw_key, 12)) == {(200, "")}
        assert set(_codes(base, to_suspend.raw_key, 12)) == {(200, "")}
        api_key_revoke(key=to_revoke.key, reason="leaked", actor="test")
        tenant_suspend(tenant=suspended_tenant, reason="abuse", actor="test")
        # Every request from here on is at least 2 s after the commit.
        time.sleep(PROPAGATION_BOUND_SECONDS)
        assert set(_codes(base, to_revoke.raw_key, 12)) == {(401, "api_key_revoked")}
        assert set(_codes(base, to_suspend.raw_key, 12)) == {(403, "tenant_suspended")}
