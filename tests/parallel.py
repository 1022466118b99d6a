"""Isolation of pytest-xdist workers: each worker is a machine of its own.

``make test`` runs the suite on ``TEST_WORKERS`` processes (pytest-xdist,
``auto``: one per core).  Loaded with ``-p tests.parallel`` (pyproject's
``addopts``), this module runs in every worker before Django reads its
settings, and gives the worker its own:

- ``MAAS_VAR_DIR`` (``<var>/xdist-gwN``): the SQLite test database, the file
  cache that holds embedded quota counters, the filesystem Celery broker,
  the model store, exports (the collected static files stay shared: the
  tests only read them, and ``gateway.static_collect`` locks a collection);
- Redis database (``REDIS_URL``'s number plus N): quota counters, caches,
  and the Celery broker and results that the worker's own Celery processes
  read, so one worker's Celery never runs another worker's task.

PostgreSQL needs nothing: pytest-django already gives each worker its own
test database (``test_<name>_gwN``), and every role or scratch database a
test creates is named after it.  Child processes (gunicorn, Celery, bench
scripts) inherit the environment, so they land in the same places.  Run
without xdist (plain ``pytest``), this module changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
REDIS_DATABASES = 16  # Redis' default ``databases``


def redis_url_for_worker(url: str, worker: int) -> str:
    """``url`` with its database number moved up by ``worker`` (refused past the last database)."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    base = int(path) if path else 0
    number = base + worker
    if number >= REDIS_DATABASES:
        raise RuntimeError(
            f"xdist worker gw{worker} would need Redis database {number} ({url} plus {worker}); "
            f"Redis has {REDIS_DATABASES}: run fewer workers (make test TEST_WORKERS=N) or a lower base database"
        )
    return urlunsplit(parts._replace(path=f"/{number}"))


def _isolate(worker_id: str) -> None:
    worker = int(worker_id.removeprefix("gw"))
    var_dir = Path(os.environ.get("MAAS_VAR_DIR") or ROOT / "var")
    os.environ["MAAS_VAR_DIR"] = str(var_dir / f"xdist-{worker_id}")
    # Collected once by ``make test``'s bootstrap and only read by the tests: shared, not per worker.
    os.environ.setdefault("STATIC_ROOT", str(var_dir / "static"))
    if os.environ.get("REDIS_URL"):
        os.environ["MAAS_XDIST_BASE_REDIS_URL"] = os.environ["REDIS_URL"]
        os.environ["REDIS_URL"] = redis_url_for_worker(os.environ["REDIS_URL"], worker)


_worker_id = os.environ.get("PYTEST_XDIST_WORKER")
if _worker_id and not os.environ.get("MAAS_XDIST_ISOLATED"):
    _isolate(_worker_id)
    os.environ["MAAS_XDIST_ISOLATED"] = _worker_id  # children inherit the result; never shift twice


#: Marks of the tests that run for seconds to minutes, heaviest first (see :func:`pytest_collection_modifyitems`).
LONG_MARKS = ("slow", "e2e", "browser")


def _weight(item) -> int:
    marks = {mark.name for mark in item.iter_markers()}
    return next((len(LONG_MARKS) - i for i, name in enumerate(LONG_MARKS) if name in marks), 0)


def _database_group(item) -> int:
    """pytest-django's order (Django's): database tests in transactions, then transactional ones, then the rest.

    A transactional test ends by flushing every table, the rows the migrations
    installed included (the baseline policy): the tests that rely on those rows
    must all run before the first flush.
    """
    from pytest_django.plugin import validate_django_db

    marker = item.get_closest_marker("django_db")
    fixtures = getattr(item, "fixturenames", ())
    transactional = "transactional_db" in fixtures or "live_server" in fixtures
    uses_db = marker is not None or "db" in fixtures
    if marker is not None:
        transaction, reset_sequences, *_ = validate_django_db(marker)
        transactional = transactional or transaction or reset_sequences
    return 1 if transactional else 0 if uses_db else 2


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items) -> None:
    """Under xdist, hand out the long tests first within pytest-django's groups (after pytest-randomly's shuffle).

    xdist's ``load`` scheduling deals tests in collection order; a minutes-long
    test dealt last keeps one worker busy while the others sit idle, which is
    most of the difference between the sum of the tests' times over the
    workers and the wall time.  The sort is stable and every worker sorts the
    same shuffled list the same way, so they still agree on the order and the
    seed still replays it; it never moves a test across pytest-django's groups.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: (_database_group(item), -_weight(item)))
