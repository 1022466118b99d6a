"""Database-level protection of the audit tables and the one sanctioned bypass for tests.

On PostgreSQL, migration 0003 installs triggers that reject UPDATE, DELETE and
TRUNCATE on the audit tables.  DELETE passes only inside the purge, which sets
``maas.audit_purge`` for its own transaction.  TRUNCATE passes only when the
transaction set ``maas.audit_flush``: Django's test framework empties *every*
table with one TRUNCATE after each transactional test, and a database wipe of
that kind is no different from dropping the database, which no trigger can
stop either.  :func:`allow_test_flush` sets it for exactly those statements
(a TRUNCATE of every table, content types included), and only while Django's
test environment is active (``mail.outbox`` exists
only between ``setup_test_environment`` and its teardown).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PURGE_SETTING = "maas.audit_purge"
FLUSH_SETTING = "maas.audit_flush"
# Django's flush truncates every model table at once, content types included;
# a TRUNCATE aimed at the audit tables alone never names this one.
_WHOLE_DATABASE = '"django_content_type"'
AUDIT_TABLES = ("audit_auditevent", "audit_sealedblock", "audit_purgetombstone")  # guarded by migration 0003


def _test_environment_active() -> bool:
    from django.core import mail

    return hasattr(mail, "outbox")


def allow_test_flush(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict) -> Any:
    """Execute wrapper: lets the test framework's flush TRUNCATE the audit tables."""
    if isinstance(sql, str) and sql.startswith("TRUNCATE ") and _WHOLE_DATABASE in sql and _test_environment_active():
        execute(f"SET LOCAL {FLUSH_SETTING} = 'on'", None, False, context)
    return execute(sql, params, many, context)


def install_flush_hook(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: wrap PostgreSQL connections (the wrapper checks for tests)."""
    if connection.vendor != "postgresql":
        return
    if allow_test_flush not in connection.execute_wrappers:
        connection.execute_wrappers.append(allow_test_flush)
