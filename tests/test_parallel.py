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
    # The static files are shared (collected once by make test's bootstrap, or where STATIC_ROOT says): no worker's own.
    assert f"xdist-{worker}" not in Path(settings.STATIC_ROOT).parts
    if settings.REDIS_URL:
        expected = redis_url_for_worker(os.environ["MAAS_XDIST_BASE_REDIS_URL"], int(worker.removeprefix("gw")))
        assert expected == settings.REDIS_URL


class _Item:
    def __init__(self, name: str, *marks: str, db: str = "") -> None:
        self.name, self._marks = name, [getattr(pytest.mark, m).mark for m in marks]
        self.fixturenames = {"": (), "db": ("db",), "transactional": ("transactional_db",)}[db]
        if db:
            self._marks.append(pytest.mark.django_db(transaction=db == "transactional").mark)

    def iter_markers(self):
        return iter(self._marks)

    def get_closest_marker(self, name: str):
        return next((m for m in self._marks if m.name == name), None)


def test_long_tests_are_dealt_first_keeping_the_shuffled_order_within_a_weight(monkeypatch):
    from tests import parallel

    items = [
        _Item("a"),
        _Item("b", "e2e"),
        _Item("c", "embedded"),
        _Item("d", "slow", "e2e"),
        _Item("e", "browser"),
        _Item("f", "e2e"),
    ]
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    parallel.pytest_collection_modifyitems(None, None, items)
    assert [i.name for i in items] == ["d", "b", "f", "e", "a", "c"]
    # Never across pytest-django's groups: a transactional test's flush would wipe the migrations' rows.
    grouped = [
        _Item("slow-nodb", "slow"),
        _Item("flush", "e2e", db="transactional"),
        _Item("plain-db", db="db"),
        _Item("slow-db", "slow", db="db"),
    ]
    parallel.pytest_collection_modifyitems(None, None, grouped)
    assert [i.name for i in grouped] == ["slow-db", "plain-db", "flush", "slow-nodb"]
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    plain = [_Item("a"), _Item("b", "slow")]
    parallel.pytest_collection_modifyitems(None, None, plain)
    assert [i.name for i in plain] == ["a", "b"]  # plain pytest: the order is left alone
