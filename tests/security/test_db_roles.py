"""Issue #13, least privilege: the application role cannot rewrite the audit trail, yet purge works.

On PostgreSQL the gateway runs as an application role with only SELECT and
INSERT on the sealed tables; the retention purge goes through
``audit_purge_blocks``, owned by the owner role, which checks the floor and
legal holds itself; no session setting switches the guard off.  The test
database's role (a superuser) plays the owner; the application role is
created by the same code ``manage.py bootstrap`` runs, and taken on with
``SET LOCAL ROLE`` inside the test's transaction (so it vanishes with it).
On SQLite, triggers refuse UPDATE and DELETE outside the purge.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from psycopg import sql

from audit.models import AuditEvent, PurgeTombstone, SealedBlock
from audit.services import audit_event_record, audit_purge, audit_seal, audit_verify, legal_hold_place
from gateway.db_roles import db_roles_grant
from tests.audit.factories import AuditEventFactory

pytestmark = [pytest.mark.django_db]
on_postgres = pytest.mark.skipif(not settings.DATABASE_IS_POSTGRES, reason="roles exist only on PostgreSQL")

BLOCK = 5


@pytest.fixture(autouse=True)
def _small_blocks(settings):
    settings.AUDIT_SEAL_BLOCK_SIZE = BLOCK
    settings.AUDIT_SEAL_LAG_SECONDS = 0


@pytest.fixture
def aged(db):
    """Two blocks of 400-day-old events and one recent block, sealed."""
    old = timezone.now() - timedelta(days=400)
    for _ in range(2 * BLOCK):
        AuditEventFactory(occurred_at=old, tenant_slug="acme")
    for _ in range(BLOCK):
        AuditEventFactory(occurred_at=timezone.now() - timedelta(days=1), tenant_slug="acme")
    audit_seal()
    assert SealedBlock.objects.count() == 3


@pytest.fixture
def app_role(db) -> str:
    """The application role, created and granted by the bootstrap code (rolled back with the test)."""
    name = f"{connection.settings_dict['NAME']}_app"[:63]
    report = db_roles_grant(app_role=name)
    assert "audit_auditevent" in report.sealed and "audit_sealedblock" in report.sealed
    return name


@contextmanager
def as_role(role: str) -> Iterator[None]:
    """Run the block as ``role`` (a savepoint: a refused statement rolls back only the block)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f'SET LOCAL ROLE "{role}"')
        yield
        cursor.execute("RESET ROLE")


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
        "TRUNCATE audit_purgetombstone CASCADE",
    ],
)
def test_the_application_role_cannot_update_delete_or_truncate(aged, app_role, statement):
    for bypass in ("", "SET LOCAL maas.audit_purge = 'on'", "SET LOCAL maas.audit_flush = 'on'"):
        with pytest.raises(DatabaseError, match="permission denied"), as_role(app_role), connection.cursor() as c:
            if bypass:
                c.execute(bypass)
            c.execute(statement)
    assert AuditEvent.objects.count() == 3 * BLOCK and SealedBlock.objects.count() == 3


@on_postgres
def test_the_application_role_records_reads_and_purges_through_the_function(aged, app_role):
    with as_role(app_role):
        event = audit_event_record(event_type="request", action="v1.predict", http_status=200)
        assert AuditEvent.objects.filter(seq=event.seq).exists()
        assert audit_seal().events == 1  # sealing needs no more than SELECT/INSERT either
        result = audit_purge(actor="system:test")
    assert result.blocks == 2 and result.events == 2 * BLOCK
    assert SealedBlock.objects.count() == 2 and PurgeTombstone.objects.count() == 1
    assert audit_verify().ok


@on_postgres
def test_the_purge_function_enforces_floor_and_legal_holds_itself(aged, app_role):
    """A compromised gateway calling the function directly still cannot purge early or under a hold."""
    with pytest.raises(DatabaseError, match="retention floor"), as_role(app_role), connection.cursor() as c:
        c.execute("SELECT audit_purge_blocks(3, 3)")  # the recent block
    with pytest.raises(DatabaseError, match="not all sealed"), as_role(app_role), connection.cursor() as c:
        c.execute("SELECT audit_purge_blocks(1, 9)")
    legal_hold_place(tenant_slug="acme", reason="litigation", actor="staff:legal")
    with pytest.raises(DatabaseError, match="legal hold"), as_role(app_role), connection.cursor() as c:
        c.execute("SELECT audit_purge_blocks(1, 1)")
    assert SealedBlock.objects.count() == 3


@on_postgres
def test_even_the_owner_cannot_delete_outside_the_purge_function(aged):
    for setting in ("maas.audit_purge", "maas.audit_flush"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as c:
            c.execute(f"SET LOCAL {setting} = 'on'")
            c.execute("DELETE FROM audit_auditevent")
    assert AuditEvent.objects.count() == 3 * BLOCK


@on_postgres
def test_db_grants_command_without_an_owner_url_says_one_role_does_both():
    out = io.StringIO()
    call_command("db_grants", stdout=out)
    assert "DATABASE_OWNER_URL is not set" in out.getvalue()


@pytest.mark.embedded
def test_sqlite_triggers_refuse_update_and_delete_outside_the_purge(aged):
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL: the role tests above")
    result = audit_purge(actor="system:test")  # the purge path still deletes
    assert result.blocks == 2 and SealedBlock.objects.count() == 1 and audit_verify().ok
    # SQLite triggers are per row: every statement below would change at least one row.
    for statement in (
        "UPDATE audit_auditevent SET http_status = 500",
        "DELETE FROM audit_auditevent",
        "UPDATE audit_sealedblock SET merkle_root = 'x'",
        "DELETE FROM audit_sealedblock",
        "UPDATE audit_purgetombstone SET reason = 'x'",
        "DELETE FROM audit_purgetombstone",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as c:
            c.execute(statement)
    assert AuditEvent.objects.count() == BLOCK + 1 and PurgeTombstone.objects.count() == 1  # + the purge event


@on_postgres
def test_bootstrap_creates_the_owner_and_application_roles_from_an_admin_login():
    """``DATABASE_ADMIN_URL`` lets ``make setup`` create both roles: the owner may build the schema, the app may not."""
    import uuid

    import psycopg

    from gateway.db_roles import db_roles_create

    suffix = uuid.uuid4().hex[:8]
    base = dict(connection.settings_dict)
    owner = dict(base, USER=f"maas_t_owner_{suffix}", PASSWORD="")
    app = dict(base, USER=f"maas_t_app_{suffix}", PASSWORD="")
    where = {"dbname": base["NAME"], "host": base.get("HOST") or "127.0.0.1", "port": base.get("PORT") or 5432}
    try:
        report = db_roles_create(admin=base, owner=owner, app=app)
        assert report.created == [owner["USER"], app["USER"]]
        assert db_roles_create(admin=base, owner=owner, app=app).created == []  # idempotent: make setup again
        with psycopg.connect(**where, user=owner["USER"], autocommit=True) as conn:
            conn.execute("CREATE TABLE maas_t_owner_probe (id int)")  # migrations will work as the owner
            conn.execute("DROP TABLE maas_t_owner_probe")
            created_role = conn.execute("SELECT rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone()
            assert created_role == (True,)  # so db_grants can manage the application role
        with (
            psycopg.connect(**where, user=app["USER"], autocommit=True) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute("CREATE TABLE maas_t_app_probe (id int)")
    finally:
        with psycopg.connect(**where, user=base["USER"] or "postgres", autocommit=True) as conn:
            for role in (app["USER"], owner["USER"]):
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_two_roles_are_required_to_create_them():
    from gateway.db_roles import db_roles_create

    same = {"NAME": "maas", "USER": "maas"}
    with pytest.raises(ValueError, match="two different"):
        db_roles_create(admin=same, owner=same, app=same)
