"""Least privilege on PostgreSQL: what the application role may do to which table.

Two roles share one database.  The *owner* role (``DATABASE_OWNER_URL``) owns
the schema: it runs migrations and owns ``audit_purge_blocks``, the
``SECURITY DEFINER`` function that is the only way audit rows are deleted.
The *application* role (``DATABASE_URL``), which the gateway and the workers
use, gets ``SELECT``/``INSERT``/``UPDATE``/``DELETE`` on the ordinary tables
and only ``SELECT``/``INSERT`` on the sealed audit tables, plus ``EXECUTE`` on
the purge function: it can neither rewrite nor delete the trail, and no
session setting changes that.

:func:`db_roles_grant` applies this after every migration (``manage.py
db_grants``, run by ``manage.py bootstrap``); a table added later has no
privileges until it runs, which fails loudly rather than open.  The SQL is
the same one the README gives for managed databases.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections
from psycopg import sql

#: Rows that are evidence: insert and read, never change (migrations 0003 and 0006 guard them too).
SEALED_TABLES = ("audit_auditevent", "audit_sealedblock", "audit_purgetombstone", "audit_shreddingtombstone")
PURGE_FUNCTION = "audit_purge_blocks(bigint, bigint)"
#: Creates the event table's monthly partitions ahead (audit migration 0010); the beat task calls it.
PARTITION_FUNCTION = "audit_partitions_ensure(date, integer)"


@dataclass
class GrantReport:
    """What :func:`db_roles_grant` did."""

    app_role: str
    created_role: bool = False
    tables: int = 0
    sealed: list[str] = field(default_factory=list)


_CONNECTION_KEYS = ("NAME", "USER", "PASSWORD", "HOST", "PORT")


@contextmanager
def connected_as_owner(using: str = "default") -> Iterator[bool]:
    """Reconnect ``using`` as the owner role of ``DATABASE_OWNER_URL`` for the block; yields whether it did.

    Migrations (data migrations and ``post_migrate`` handlers included) then
    run as the owner without a second database alias.  Without an owner URL
    the block runs as the one configured role.
    """
    owner = getattr(settings, "DATABASE_OWNER", None)
    if not owner:
        yield False
        return
    connection = connections[using]
    connection.close()
    saved = {key: connection.settings_dict.get(key) for key in _CONNECTION_KEYS}
    connection.settings_dict.update({key: owner.get(key) for key in _CONNECTION_KEYS})
    try:
        yield True
    finally:
        connection.close()
        connection.settings_dict.update(saved)


def _role_exists(cursor, role: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
    return cursor.fetchone() is not None


def db_roles_grant(*, app_role: str, app_password: str | None = None, using: str = "default") -> GrantReport:
    """Create ``app_role`` if missing (when this role may) and grant it exactly what the gateway needs.

    Runs as the role of the ``using`` alias, which must own the tables (the
    owner role: see :func:`connected_as_owner`).  Idempotent: privileges are
    revoked and granted again.
    """
    connection = connections[using]
    report = GrantReport(app_role=app_role)
    role = sql.Identifier(app_role)
    with connection.cursor() as cursor:
        if not _role_exists(cursor, app_role):
            statement = sql.SQL("CREATE ROLE {} LOGIN").format(role)
            if app_password:
                statement = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(app_password))
            cursor.execute(statement)
            report.created_role = True
        cursor.execute("SELECT current_schema(), current_database()")
        schema, database = cursor.fetchone()
        cursor.execute(
            "SELECT c.relname, c.relispartition FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.relname",
            [schema],
        )
        rows = cursor.fetchall()
        tables = [name for name, is_partition in rows if not is_partition]
        # Partitions (the audit events' months) are reached through their parent, whose
        # privileges apply; directly the application role may do nothing with them.
        for name, _ in (row for row in rows if row[1]):
            cursor.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(sql.Identifier(schema, name), role))
        cursor.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), role))
        cursor.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), role))
        for table in tables:
            name = sql.Identifier(schema, table)
            cursor.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(name, role))
            if table in SEALED_TABLES:
                cursor.execute(sql.SQL("GRANT SELECT, INSERT ON TABLE {} TO {}").format(name, role))
                report.sealed.append(table)
            else:
                cursor.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {} TO {}").format(name, role))
            report.tables += 1
        cursor.execute(
            sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(sql.Identifier(schema), role)
        )
        cursor.execute(sql.SQL("GRANT EXECUTE ON FUNCTION " + PURGE_FUNCTION + " TO {}").format(role))
        cursor.execute("SELECT to_regprocedure(%s)", [PARTITION_FUNCTION])
        if cursor.fetchone()[0] is not None:  # absent on SQLite-era schemas before audit 0010
            cursor.execute(sql.SQL("GRANT EXECUTE ON FUNCTION " + PARTITION_FUNCTION + " TO {}").format(role))
    return report


@dataclass
class RolesReport:
    """What :func:`db_roles_create` did."""

    owner_role: str
    app_role: str
    created: list[str] = field(default_factory=list)


def _conninfo(settings_dict: dict) -> dict:
    return {
        "dbname": settings_dict.get("NAME") or "",
        "user": settings_dict.get("USER") or "",
        "password": settings_dict.get("PASSWORD") or None,
        "host": settings_dict.get("HOST") or None,
        "port": settings_dict.get("PORT") or None,
    }


def db_roles_create(*, admin: dict, owner: dict, app: dict) -> RolesReport:
    """As ``admin`` (a login with ``CREATEROLE``), create the owner and application roles when missing.

    The owner may log in, create roles (so ``db_grants`` can manage the
    application role) and create objects in the database and its ``public``
    schema, with the grant option it needs to hand ``CONNECT``/``USAGE`` on to
    the application role.  The application role may only log in: every
    privilege it has comes from :func:`db_roles_grant`.  ``CREATE`` on
    ``public`` is revoked from ``PUBLIC``, so the application role cannot
    create the functions or tables an attacker would need.  Idempotent; each
    argument is a Django ``DATABASES`` entry (``NAME``, ``USER``, ``PASSWORD``...).
    """
    import psycopg

    owner_role, app_role = owner["USER"], app["USER"]
    if not owner_role or not app_role or owner_role == app_role:
        raise ValueError("the owner and application roles must be two different, named roles")
    report = RolesReport(owner_role=owner_role, app_role=app_role)
    database = sql.Identifier(app["NAME"])
    admin_info = {k: v for k, v in _conninfo(admin).items() if v is not None}
    with psycopg.connect(**admin_info, autocommit=True) as conn, conn.cursor() as cursor:
        for role, password, options in (
            (owner_role, owner.get("PASSWORD"), sql.SQL("LOGIN CREATEROLE")),
            (app_role, app.get("PASSWORD"), sql.SQL("LOGIN")),
        ):
            if _role_exists(cursor, role):
                continue
            statement = sql.SQL("CREATE ROLE {} {}").format(sql.Identifier(role), options)
            if password:
                statement = sql.SQL("{} PASSWORD {}").format(statement, sql.Literal(password))
            cursor.execute(statement)
            report.created.append(role)
        owner_id = sql.Identifier(owner_role)
        cursor.execute(
            sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {} WITH GRANT OPTION").format(database, owner_id)
        )
    # Schema privileges are per database: granted from a connection to the gateway's database.
    with (
        psycopg.connect(
            **{k: v for k, v in (_conninfo(admin) | {"dbname": app["NAME"]}).items() if v is not None}, autocommit=True
        ) as conn,
        conn.cursor() as cursor,
    ):
        cursor.execute(
            sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {} WITH GRANT OPTION").format(sql.Identifier(owner_role))
        )
        cursor.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    return report


__all__ = [
    "PARTITION_FUNCTION",
    "PURGE_FUNCTION",
    "SEALED_TABLES",
    "GrantReport",
    "RolesReport",
    "connected_as_owner",
    "db_roles_create",
    "db_roles_grant",
]
