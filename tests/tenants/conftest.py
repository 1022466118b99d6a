"""Fixtures of the tenants tests: the quota backend under test (tenants and keys: ``tests.fixtures.tenants``)."""

from __future__ import annotations

import pytest

from core.redis import redis_reset


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
