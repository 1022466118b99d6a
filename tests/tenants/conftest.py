"""Fixtures of the tenants tests: tenants, keys, and the quota backend under test."""

from __future__ import annotations

import pytest

from core.invalidation import clock
from core.redis import redis_reset
from tenants.services import IssuedApiKey, api_key_authenticate, api_key_cache_clear, api_key_create
from tests.tenants.factories import PlanFactory, TenantFactory


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    """Keys cached by an earlier test (whose rows were rolled back) must not leak into this one."""
    api_key_cache_clear()
    yield
    api_key_cache_clear()


def caches_expire() -> None:
    """What one ``INVALIDATION_CHECK_SECONDS`` interval does in a live process: re-read the generations."""
    clock.reset()


def issue_key(tenant, **kwargs) -> IssuedApiKey:
    """Issue a key through the service, as admin and commands do."""
    kwargs.setdefault("actor", "test")
    return api_key_create(tenant=tenant, **kwargs)


@pytest.fixture
def plan(db):
    return PlanFactory()


@pytest.fixture
def tenant(db, plan):
    return TenantFactory(plan=plan)


@pytest.fixture
def issued(tenant) -> IssuedApiKey:
    return issue_key(tenant)


@pytest.fixture
def principal(issued):
    return api_key_authenticate(raw_key=issued.raw_key)


@pytest.fixture(
    params=[
        pytest.param("db", marks=pytest.mark.embedded),
        pytest.param("redis"),
    ]
)
def quota_backend(request, settings):
    """Run a quota test on the database backend and again on Redis (skipped without ``REDIS_URL``)."""
    if request.param == "redis":
        request.getfixturevalue("redis_clean")
    else:
        settings.REDIS_URL = ""
    redis_reset()
    yield request.param
    redis_reset()
