"""Append-only: the ORM refuses updates and deletes; on PostgreSQL so do triggers, even for raw SQL."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from audit.errors import AuditRecordImmutable
from audit.models import AuditEvent, PurgeTombstone, SealedBlock

from .conftest import tampering
from .factories import AuditEventFactory

pytestmark = [pytest.mark.django_db]
on_postgres = pytest.mark.skipif(not settings.DATABASE_IS_POSTGRES, reason="the triggers exist only on PostgreSQL")


@pytest.mark.embedded
def test_queryset_update_is_refused():
    event = AuditEventFactory(http_status=200)
    with pytest.raises(AuditRecordImmutable, match="append-only"):
        AuditEvent.objects.filter(seq=event.seq).update(http_status=500)
    assert AuditEvent.objects.get(seq=event.seq).http_status == 200


@pytest.mark.embedded
def test_queryset_delete_is_refused():
    event = AuditEventFactory()
    with pytest.raises(AuditRecordImmutable):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.filter(seq=event.seq).exists()


@pytest.mark.embedded
def test_instance_resave_and_delete_are_refused():
    event = AuditEventFactory(http_status=200)
    event.http_status = 500
    with pytest.raises(AuditRecordImmutable):
        event.save()
    with pytest.raises(AuditRecordImmutable):
        event.delete()
    assert AuditEvent.objects.get(seq=event.seq).http_status == 200


@pytest.mark.embedded
def test_bulk_update_is_refused():
    event = AuditEventFactory(http_status=200)
    event.http_status = 500
    with pytest.raises(AuditRecordImmutable):
        AuditEvent.objects.bulk_update([event], ["http_status"])


@pytest.mark.embedded
def test_new_instance_with_an_existing_seq_cannot_overwrite_it():
    event = AuditEventFactory(http_status=200)
    clash = AuditEvent(seq=event.seq, occurred_at=event.occurred_at, event_type="request", http_status=500)
    with pytest.raises(DatabaseError), transaction.atomic():
        clash.save()
    assert AuditEvent.objects.get(seq=event.seq).http_status == 200


@pytest.mark.embedded
@pytest.mark.parametrize("model", [SealedBlock, PurgeTombstone])
def test_seal_records_are_append_only_too(model):
    with pytest.raises(AuditRecordImmutable):
        model.objects.all().update(key_id="x")
    with pytest.raises(AuditRecordImmutable):
        model.objects.all().delete()


@on_postgres
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET http_status = 500",
        "DELETE FROM audit_auditevent",
        "TRUNCATE audit_auditevent",
        "UPDATE audit_sealedblock SET merkle_root = 'x'",
        "DELETE FROM audit_sealedblock",
        "TRUNCATE audit_sealedblock",
        "DELETE FROM audit_purgetombstone",
        "TRUNCATE audit_purgetombstone",
    ],
)
def test_raw_sql_is_refused_by_triggers(sealed, statement):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    assert AuditEvent.objects.count() == len(sealed)
    assert SealedBlock.objects.count() == 3


@on_postgres
def test_no_session_setting_lets_delete_through(sealed):
    """The 0003 guard honoured ``maas.audit_purge``; since 0006 only the purge function deletes."""
    for setting in ("maas.audit_purge", "maas.audit_flush"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL {setting} = 'on'")
            cursor.execute("DELETE FROM audit_auditevent WHERE seq = %s", [sealed[0].seq])
    assert AuditEvent.objects.filter(seq=sealed[0].seq).exists()
    with pytest.raises(DatabaseError, match="retention floor"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT audit_purge_blocks(1, 1)")  # young events: the function refuses itself
    assert SealedBlock.objects.count() == 3


@pytest.mark.embedded
def test_sqlite_triggers_refuse_raw_update_and_delete(sealed):
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL is covered by test_raw_sql_is_refused_by_triggers")
    for statement in (
        "UPDATE audit_auditevent SET http_status = 500",
        "DELETE FROM audit_auditevent",
        "UPDATE audit_sealedblock SET merkle_root = 'x'",
        "DELETE FROM audit_sealedblock",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    assert AuditEvent.objects.count() == len(sealed) and SealedBlock.objects.count() == 3


@pytest.mark.embedded
def test_tampering_helper_really_bypasses_the_guards(sealed):
    """The verification tests rely on this: a superuser can still write, and only the seal notices."""
    with tampering() as cursor:
        cursor.execute("UPDATE audit_auditevent SET http_status = 299 WHERE seq = %s", [sealed[0].seq])
    assert AuditEvent.objects.get(seq=sealed[0].seq).http_status == 299
