"""Database-level protection of the audit tables and the one sanctioned bypass for tests.

On PostgreSQL, migration 0003 installs triggers that reject UPDATE, DELETE and
TRUNCATE on the audit tables.  Since migration 0006, DELETE passes only inside
the ``audit_purge_blocks`` function (``SECURITY DEFINER``, owned by the owner
role, which checks the retention floor and legal holds itself); no session
setting lets it through.  On SQLite, the triggers of migration 0006 let DELETE
through only while :func:`purge_window` is open on this connection's thread
(the connection-local SQL function ``maas_audit_purge_active``).  TRUNCATE passes only when the
transaction set ``maas.audit_flush``: Django's test framework empties *every*
table with one TRUNCATE after each transactional test, and a database wipe of
that kind is no different from dropping the database, which no trigger can
stop either.  :func:`allow_test_flush` sets it for exactly those statements
(a TRUNCATE of every table, content types included), and only while Django's
test environment is active (``mail.outbox`` exists
only between ``setup_test_environment`` and its teardown).
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

FLUSH_SETTING = "maas.audit_flush"
# Django's flush truncates every model table at once, content types included;
# a TRUNCATE aimed at the audit tables alone never names this one.
_WHOLE_DATABASE = '"django_content_type"'
AUDIT_TABLES = ("audit_auditevent", "audit_sealedblock", "audit_purgetombstone")  # guarded by migration 0003
# SQLite's flush (Django's sql_flush) empties every table with one bare DELETE each.
_SQLITE_FLUSH_DELETE = re.compile(
    r'^DELETE FROM "(audit_auditevent|audit_sealedblock|audit_purgetombstone|audit_shreddingtombstone)";?$'
)

_purging: contextvars.ContextVar[bool] = contextvars.ContextVar("maas_audit_purging", default=False)


@contextmanager
def purge_window() -> Iterator[None]:
    """SQLite: let this thread's DELETEs on the sealed tables through (the retention purge only)."""
    token = _purging.set(True)
    try:
        yield
    finally:
        _purging.reset(token)


def _purge_active() -> int:
    return 1 if _purging.get() else 0


def _test_environment_active() -> bool:
    from django.core import mail

    return hasattr(mail, "outbox")


def allow_test_flush(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict) -> Any:
    """Execute wrapper: lets the test framework's flush TRUNCATE the audit tables."""
    if isinstance(sql, str) and sql.startswith("TRUNCATE ") and _WHOLE_DATABASE in sql and _test_environment_active():
        execute(f"SET LOCAL {FLUSH_SETTING} = 'on'", None, False, context)
    return execute(sql, params, many, context)


def allow_test_flush_sqlite(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict) -> Any:
    """Execute wrapper: lets the test framework's flush empty the sealed tables on SQLite."""
    if isinstance(sql, str) and _SQLITE_FLUSH_DELETE.match(sql) and _test_environment_active():
        with purge_window():
            return execute(sql, params, many, context)
    return execute(sql, params, many, context)


def install_flush_hook(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: the purge function on SQLite, the test-flush wrappers on both."""
    if connection.vendor == "sqlite":
        connection.connection.create_function("maas_audit_purge_active", 0, _purge_active)
        if allow_test_flush_sqlite not in connection.execute_wrappers:
            connection.execute_wrappers.append(allow_test_flush_sqlite)
        return
    if connection.vendor != "postgresql":
        return
    if allow_test_flush not in connection.execute_wrappers:
        connection.execute_wrappers.append(allow_test_flush)
