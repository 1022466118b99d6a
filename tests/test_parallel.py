"""The xdist isolation plugin (tests/parallel.py): each worker gets its own var dir and Redis database."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings

from tests.parallel import redis_url_for_worker


@pytest.mark.parametrize(
    ("url", "worker", "expected"),
    [
        ("redis://127.0.0.1:6379/1", 0, "redis://127.0.0.1:6379/1"),
        ("redis://127.0.0.1:6379/1", 1, "redis://127.0.0.1:6379/2"),
        ("redis://127.0.0.1:6379", 3, "redis://127.0.0.1:6379/3"),
        (
            "redis://:secret@cache.internal:6380/4?socket_timeout=2",
            2,
            "redis://:secret@cache.internal:6380/6?socket_timeout=2",
        ),
    ],
)
def test_each_worker_gets_the_next_redis_database(url, worker, expected):
    assert redis_url_for_worker(url, worker) == expected


def test_a_worker_past_the_last_redis_database_is_refused_with_the_fix():
    with pytest.raises(RuntimeError, match="TEST_WORKERS"):
        redis_url_for_worker("redis://127.0.0.1:6379/14", 2)


def test_this_process_is_isolated_when_run_by_xdist():
    """Under ``make test`` this runs in a worker: its settings point into the worker's own places."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        assert "MAAS_XDIST_ISOLATED" not in os.environ  # plain pytest: nothing moved
        return
    assert os.environ["MAAS_XDIST_ISOLATED"] == worker
    assert Path(settings.MODEL_STORE_DIR).parent.name == f"xdist-{worker}"
    # The static files are shared: collected once by make test's bootstrap, read by every worker.
    assert Path(settings.STATIC_ROOT).parent == Path(settings.MODEL_STORE_DIR).parent.parent
    if settings.REDIS_URL:
        expected = redis_url_for_worker(os.environ["MAAS_XDIST_BASE_REDIS_URL"], int(worker.removeprefix("gw")))
        assert expected == settings.REDIS_URL
