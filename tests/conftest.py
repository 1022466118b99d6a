"""Project-wide fixtures: clean Redis, API clients, and real-process helpers."""

from __future__ import annotations

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from gateway.invalidation import clock


@pytest.fixture(autouse=True)
def _fresh_invalidation_clock():
    """Every test starts with empty per-process caches.

    Test transactions roll the generation counters back, so a cache filled in
    one test could look current in the next; clearing them is the only safe start.
    """
    from policy.selectors import policy_state_cache_clear
    from tenants.services import api_key_cache_clear

    clock.reset()
    policy_state_cache_clear()
    api_key_cache_clear()
    yield
    clock.reset()
    policy_state_cache_clear()
    api_key_cache_clear()


@pytest.fixture(scope="session", autouse=True)
def _fresh_test_redis():
    """Quota counters are keyed by tenant id, and every test database reuses ids: start each session empty."""
    if settings.REDIS_URL:
        from gateway.redis import redis_client

        redis_client().flushdb()
    yield


@pytest.fixture
def redis_clean():
    """Flush the test Redis database before and after the test; skip when Redis is not configured."""
    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL not set: this test needs a real Redis")
    from gateway.redis import redis_client

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


@pytest.fixture(scope="session")
def trained():
    """The default training run (scikit-learn digits, seed 42), done once per test session.

    Shared by the inference tests and every test that serves the model, because
    importing TensorFlow and training costs seconds.
    """
    from inference import training

    return training.train_model(training.TrainingConfig())


@pytest.fixture(scope="session")
def onnx_bytes(trained) -> bytes:
    """The exported, parity-checked ONNX file of the session's model."""
    return trained.onnx_bytes


@pytest.fixture
def model_store(settings, tmp_path):
    """A private, empty model store and a process with no cached sessions."""
    from inference.selectors import serving_caches_clear

    store = tmp_path / "models"
    settings.MODEL_STORE_DIR = str(store)
    serving_caches_clear()
    yield store
    serving_caches_clear()


@pytest.fixture(scope="session")
def bundled():
    """The bundled regression and image models (``inference.training.bundled``), trained once per session."""
    from inference.training import bundled as trainers

    return {name: train() for name, (train, _, _) in trainers.TRAINERS.items()}
