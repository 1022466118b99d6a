"""Project-wide fixtures: clean Redis, API clients, and real-process helpers."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from core.invalidation import clock

# Shared fixtures live in plugins: models (the cached trained digits model, the model store),
# tenants (plans, tenants, keys issued through the service) and callers (a tenant with a key
# ready to call the API, the served digits model, digit rows).
pytest_plugins = ["tests.fixtures.models", "tests.fixtures.tenants", "tests.fixtures.callers"]


@pytest.fixture(autouse=True)
def _fresh_invalidation_clock():
    """Every test starts with empty per-process caches.

    Test transactions roll the generation counters back, so a cache filled in
    one test could look current in the next; clearing them is the only safe start.
    """
    from policy.selectors import policy_state_cache_clear
    from tenants.services import api_key_cache_clear

    # Every test runs as on a freshly booted machine: the generation clock's
    # monotonic time starts at zero, so a "never read" sentinel that looks like
    # a recent read (the 0.0 bug) fails here on any machine, not only young ones.
    started = time.monotonic()
    clock.use_time_source(lambda: time.monotonic() - started)
    policy_state_cache_clear()
    api_key_cache_clear()
    yield
    clock.use_time_source(time.monotonic)
    policy_state_cache_clear()
    api_key_cache_clear()


@pytest.fixture(autouse=True)
def _live_statistics_in_memory(settings):
    """Live statistics stay in the test process: no flusher thread writing outside the test's transaction.

    Tests of the flush call ``monitoring.services.live_stats_flush`` themselves.
    """
    from monitoring.selectors import live_bins_cache_clear
    from monitoring.services import live_stats_reset

    settings.MONITORING_FLUSH_THREAD = False
    live_stats_reset()
    live_bins_cache_clear()
    yield
    live_stats_reset()


@pytest.fixture(autouse=True)
def _auth_failure_throttle_out_of_the_way(settings):
    """Tests send bad keys by the dozen from 127.0.0.1: no throttle or aggregation unless a test sets its own.

    tests/security/test_auth_flood.py sets the production-like limits it checks.
    """
    settings.AUTH_FAILURE_LIMIT = settings.AUTH_FAILURE_VERBATIM = 10**9


@pytest.fixture(autouse=True)
def _own_checkpoint_log(settings, tmp_path):
    """Each test seals into its own checkpoint log, as each test has its own database state.

    The log lives outside the database by design, so the test database's
    rollback cannot empty it: a log left by another test would make the sealer
    refuse (rightly) a chain it has never seen.
    """
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path / "checkpoints")
    settings.AUDIT_CHECKPOINT_SINKS = []


@pytest.fixture(scope="session", autouse=True)
def _static_without_manifest():
    """In-process tests render admin pages without running collectstatic first.

    Production uses WhiteNoise's hashed manifest storage, which refuses to name
    a file that was never collected; the browser tests collect and serve the
    real thing through gunicorn.
    """
    from django.test import override_settings

    storages = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(STORAGES=storages):
        yield


@pytest.fixture(scope="session", autouse=True)
def _fresh_test_redis():
    """Quota counters are keyed by tenant id, and every test database reuses ids: start each session empty."""
    if settings.REDIS_URL:
        from core.redis import redis_client

        redis_client().flushdb()
    yield


@pytest.fixture
def redis_clean():
    """Flush the test Redis database before and after the test; skip when Redis is not configured."""
    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL not set: this test needs a real Redis")
    from core.redis import redis_client

    client = redis_client()
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def api_client() -> APIClient:
    """A DRF test client (in-process; end-to-end tests use real servers)."""
    return APIClient()


@pytest.fixture
def celery_eager(settings):
    """Run tasks inline for unit tests of a task's logic (never the only test of a path)."""
    from gateway.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False
    app.conf.task_eager_propagates = False
