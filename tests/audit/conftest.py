"""Fixtures of the audit-trail tests: small blocks, no sealing lag, raw-SQL tampering helpers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection, transaction

from audit.models import AuditEvent
from audit.selectors import audit_public_key_info
from audit.services import audit_seal

from .factories import AuditEventFactory

BLOCK_SIZE = 5


@pytest.fixture(autouse=True)
def _audit_settings(settings, tmp_path):
    """Blocks of five events, no safety lag (unless a test sets one), exports and checkpoints under tmp_path."""
    settings.AUDIT_SEAL_BLOCK_SIZE = BLOCK_SIZE
    settings.AUDIT_SEAL_LAG_SECONDS = 0
    settings.EXPORT_DIR = str(tmp_path / "exports")
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path / "checkpoints")
    settings.AUDIT_CHECKPOINT_SINKS = []


@pytest.fixture
def events(db) -> list[AuditEvent]:
    """Twelve request events of two tenants: three blocks of five, five and two."""
    rows = []
    for i in range(12):
        tenant = "acme" if i % 3 else "globex"
        rows.append(
            AuditEventFactory(
                tenant_slug=tenant,
                tenant_id=1 if tenant == "acme" else 2,
                decision="deny" if i % 4 == 0 else "allow",
                model_name="digits" if i % 2 else "iris",
                detail={"i": i},
            )
        )
    return rows


@pytest.fixture
def sealed(events) -> list[AuditEvent]:
    """The twelve events, sealed."""
    result = audit_seal()
    assert result.events == len(events)
    return events


@contextmanager
def tampering() -> Iterator[Any]:
    """A cursor that bypasses the append-only triggers, as a database superuser could.

    On PostgreSQL the triggers are switched off for this transaction only
    (``session_replication_role = replica`` needs superuser, which the test
    role is); on SQLite, whoever holds the file can drop the triggers, so the
    helper does that for this transaction only and restores them.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        triggers: list[tuple[str, str]] = []
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        elif connection.vendor == "sqlite":
            cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'audit_%'")
            triggers = list(cursor.fetchall())
            for name, _ in triggers:
                cursor.execute(f'DROP TRIGGER "{name}"')
        yield cursor
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = origin")
        for _, sql in triggers:
            cursor.execute(sql)


def db_value(field: str, value: Any) -> Any:
    """``value`` adapted for raw SQL on the current backend (UUIDs, JSON, datetimes)."""
    return AuditEvent._meta.get_field(field).get_db_prep_value(value, connection, prepared=False)


def raw_update(seq: int, **columns: Any) -> None:
    """UPDATE one event row behind the ORM's back."""
    assignments = ", ".join(f"{connection.ops.quote_name(name)} = %s" for name in columns)
    with tampering() as cursor:
        cursor.execute(
            f"UPDATE audit_auditevent SET {assignments} WHERE seq = %s",
            [*(db_value(name, value) for name, value in columns.items()), seq],
        )


def raw_delete(seq: int) -> None:
    """DELETE one event row behind the ORM's back."""
    with tampering() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE seq = %s", [seq])


def trusted_pem() -> str:
    """The audit public key a verifier pins (as saved from ``GET /v1/audit/public-key``)."""
    return audit_public_key_info()["public_key_pem"]
