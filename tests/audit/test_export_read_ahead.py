"""The export's read-ahead: the next page is fetched on a second connection while this one is encoded.

It must write exactly the bytes of the single-connection export, never run
inside the caller's transaction (a second connection cannot see its rows),
and leave no thread or connection behind, whether the export ends, is
abandoned half way, or fails on a page.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time

import pytest
from django.db import connection, transaction

from audit.selectors import ExportFilters
from audit.services import audit_export_write, audit_seal
from audit.services import export as export_module
from audit.services.export import ExportStream

from .factories import AuditEventFactory

pytestmark = pytest.mark.embedded


def _export_bytes(fmt: str = "csv", **filters) -> tuple[bytes, dict]:
    stream = io.BytesIO()
    manifest = audit_export_write(filters=ExportFilters(**filters), format=fmt, stream=stream, actor="staff:carol")
    return stream.getvalue(), manifest


def _export_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("audit-export") and t.is_alive()]


@pytest.fixture
def read_ahead_calls(monkeypatch) -> list[int]:
    """Counts the exports that took the read-ahead path."""
    calls: list[int] = []
    original = export_module._read_ahead

    def spy(pages):
        calls.append(1)
        return original(pages)

    monkeypatch.setattr(export_module, "_read_ahead", spy)
    return calls


@pytest.fixture
def trail(settings) -> None:
    """Sixty events (half sealed, two tenants) read in pages of seven."""
    settings.AUDIT_EXPORT_PAGE_SIZE = 7
    AuditEventFactory.create_batch(30, tenant_slug="acme")
    AuditEventFactory.create_batch(10, tenant_slug="globex")
    audit_seal()
    AuditEventFactory.create_batch(20, tenant_slug="acme")


def _connection_count() -> int:
    """Open connections to the test database (SQLite: always 1, the caller's; it has no read-ahead)."""
    if connection.vendor != "postgresql":
        return 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def _connection_count_settles_at(expected: int, *, within: float = 10.0) -> int:
    """The connection count once it reaches ``expected`` (or the last count after ``within`` seconds).

    A closed connection's server process leaves ``pg_stat_activity`` a moment
    after the client has closed its socket; on a busy machine that moment is
    long enough for a single read to see it still there.
    """
    deadline = time.monotonic() + within
    count = _connection_count()
    while count != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        count = _connection_count()
    return count


def _read_ahead_expected() -> list[int]:
    """PostgreSQL reads ahead; SQLite (one writer, a file) exports on the caller's connection."""
    return [1] if connection.vendor == "postgresql" else []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("tenant", ["", "acme"])
def test_read_ahead_writes_the_same_bytes_as_one_connection(settings, trail, read_ahead_calls, fmt, tenant):
    settings.AUDIT_EXPORT_READ_AHEAD = False
    plain, plain_manifest = _export_bytes(fmt, tenant=tenant)
    assert read_ahead_calls == []
    settings.AUDIT_EXPORT_READ_AHEAD = True
    ahead, ahead_manifest = _export_bytes(fmt, tenant=tenant)
    assert read_ahead_calls == _read_ahead_expected()
    # The second export also sees the first export's own audit event, so compare the rows
    # both of them cover: everything up to the first export's upper bound.
    assert ahead_manifest["row_count"] >= plain_manifest["row_count"] > 7 * 3
    assert ahead.startswith(plain)
    assert hashlib.sha256(ahead).hexdigest() == ahead_manifest["sha256"]
    assert ahead_manifest["blocks"] == plain_manifest["blocks"]
    assert _export_threads() == []


@pytest.mark.django_db(transaction=True)
def test_read_ahead_leaves_no_thread_or_connection_when_abandoned(trail, read_ahead_calls):
    before = _connection_count()
    stream = ExportStream(filters=ExportFilters(), fmt="csv", actor="staff:carol", source="command", file_name="")
    chunks = iter(stream)
    assert next(chunks)  # the first page, with the worker already fetching the second
    assert read_ahead_calls == _read_ahead_expected()
    assert len(_export_threads()) == len(read_ahead_calls)
    chunks.close()  # the client went away
    assert _export_threads() == []
    assert _connection_count_settles_at(before) == before


@pytest.mark.django_db(transaction=True)
def test_a_failing_page_fails_the_export_and_cleans_up(trail, read_ahead_calls, monkeypatch):
    original = export_module._pages

    def broken_pages(*args, **kwargs):
        pages = original(*args, **kwargs)
        yield next(pages)
        raise RuntimeError("connection lost while reading page 2")

    monkeypatch.setattr(export_module, "_pages", broken_pages)
    before = _connection_count()
    with pytest.raises(RuntimeError, match="page 2"):
        _export_bytes()
    assert read_ahead_calls == _read_ahead_expected()
    assert _export_threads() == []
    assert _connection_count_settles_at(before) == before


@pytest.mark.django_db(transaction=True)
def test_no_read_ahead_inside_the_callers_transaction(trail, read_ahead_calls):
    """A second connection would miss the rows the caller has not committed yet."""
    with transaction.atomic():
        AuditEventFactory.create_batch(5, tenant_slug="initech")
        data, manifest = _export_bytes(tenant="initech")
    assert read_ahead_calls == []
    assert manifest["row_count"] == 5
    assert data.count(b"\r\n") == 6  # header and five rows
