"""Migration 0010 turns a populated event table into monthly partitions without losing or changing a row.

The table is taken back to 0009 (one plain table), filled and sealed, then
migrated forward: every row must come back identical, the seals and the chain
must still verify, new events must continue the sequence, and the purge must
still work on the converted table.  Back to 0009 again, every row survives the
reverse too.  On SQLite the migration is a no-op and the same checks hold.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from audit.models import AuditEvent, SealedBlock
from audit.services import (
    audit_events_partitioned,
    audit_partitions_describe,
    audit_purge,
    audit_seal,
    audit_verify,
)

from .conftest import BLOCK_SIZE, tampering
from .factories import AuditEventFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

BEFORE_PARTITIONS = [("audit", "0009_audit_verification_event_type")]


def _migrate(targets: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def _latest() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def _rows() -> list[dict]:
    return list(AuditEvent.objects.order_by("seq").values())


def test_a_populated_table_is_partitioned_without_losing_a_row_and_still_verifies():
    latest = _latest()
    try:
        _migrate(BEFORE_PARTITIONS)
        assert not audit_events_partitioned()
        now = timezone.now()
        # Two blocks old enough to purge (recorded two months ago), two recent blocks of two tenants.
        for i in range(2 * BLOCK_SIZE):
            AuditEventFactory(occurred_at=now - timedelta(days=500), recorded_at=now - timedelta(days=60 - i))
        for i in range(2 * BLOCK_SIZE):
            AuditEventFactory(tenant_slug="globex" if i % 2 else "acme", detail={"i": i})
        assert audit_seal().events == 4 * BLOCK_SIZE
        before = _rows()

        _migrate(latest)

        assert _rows() == before  # every row, every column
        if connection.vendor == "postgresql":
            assert audit_events_partitioned()
            names = [p.name for p in audit_partitions_describe()]
            assert "audit_auditevent_plegacy" in names and "audit_auditevent_pdefault" in names
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM audit_auditevent_plegacy")
                assert cursor.fetchone()[0] == len(before)  # attached in place: nothing moved
        report = audit_verify()
        assert report.ok, report.problems
        fresh = AuditEventFactory()
        assert fresh.seq > before[-1]["seq"]  # the sequence continues
        audit_seal()
        assert audit_verify().ok

        result = audit_purge(actor="system:test")  # the legacy partition is only partly expired: row deletes
        assert (result.blocks, result.events) == (2, 2 * BLOCK_SIZE)
        assert list(SealedBlock.objects.values_list("number", flat=True))[:2] == [3, 4]
        assert audit_verify().ok
        kept = _rows()

        _migrate(BEFORE_PARTITIONS)  # and back: one plain table with the same rows
        assert not audit_events_partitioned() and _rows() == kept
        assert audit_verify().ok
    finally:
        # Leave the layout a new installation has (no legacy partition) for the tests after this one:
        # back to one table, emptied behind the triggers' back, and forward again.
        _migrate(BEFORE_PARTITIONS)
        with tampering() as cursor:
            cursor.execute("DELETE FROM audit_auditevent")
        _migrate(latest)
