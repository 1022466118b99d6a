"""Least privilege for the audit trail: a purge function owned by the owner role, no session bypass.

PostgreSQL: the append-only guard no longer honours ``maas.audit_purge``
(any role that could write could set it).  DELETE on the sealed tables passes
only inside ``audit_purge_blocks``, a ``SECURITY DEFINER`` function owned by
the role that runs migrations; it re-checks what the application checked
(whole sealed blocks, every event older than the retention floor, no active
legal hold on any tenant in the range) before deleting as the owner.  The
application role is granted ``EXECUTE`` on it and only ``SELECT``/``INSERT``
on the sealed tables (``manage.py db_grants``), so neither a session setting
nor a compromised gateway can delete or rewrite audit rows.  TRUNCATE still
passes with ``maas.audit_flush`` (the test framework's whole-database flush),
but only for a role that owns the table: the application role has no
TRUNCATE privilege to begin with.

SQLite: triggers refuse UPDATE on the sealed tables and DELETE outside the
purge, which the application signals through the connection-local SQL
function ``maas_audit_purge_active()`` (``policy.audit.db``); a program
without that function (the sqlite3 shell, another tool) cannot delete either.

The retention floor is frozen into the function from the setting when this
migration runs: it is law (180 days), not configuration.
"""

from django.conf import settings
from django.db import migrations

SEALED = ("audit_auditevent", "audit_sealedblock", "audit_purgetombstone")

GUARD_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_append_only_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    stack text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        -- Only the purge function, running as the table owner, may delete.
        GET DIAGNOSTICS stack = PG_CONTEXT;
        IF stack LIKE '%%function audit_purge_blocks(bigint,bigint)%%'
           AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE') THEN
            RETURN NULL;
        END IF;
    END IF;
    IF TG_OP = 'TRUNCATE' AND current_setting('maas.audit_flush', true) = 'on'
       AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE') THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit trail is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING HINT = 'Audit rows are removed only by the retention purge (manage.py purge_audit).';
END;
$$;
"""

PURGE_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_purge_blocks(p_first_block bigint, p_last_block bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, {schema} AS $$
DECLARE
    floor_days CONSTANT integer := {floor_days};
    v_blocks bigint;
    v_first_seq bigint;
    v_last_seq bigint;
    v_newest timestamptz;
    v_removed bigint;
BEGIN
    IF p_first_block IS NULL OR p_last_block IS NULL OR p_last_block < p_first_block THEN
        RAISE EXCEPTION 'audit purge refused: invalid block range % to %', p_first_block, p_last_block;
    END IF;
    SELECT count(*), min(first_seq), max(last_seq), max(last_occurred_at)
        INTO v_blocks, v_first_seq, v_last_seq, v_newest
        FROM audit_sealedblock WHERE number BETWEEN p_first_block AND p_last_block;
    IF v_blocks <> p_last_block - p_first_block + 1 THEN
        RAISE EXCEPTION 'audit purge refused: blocks % to % are not all sealed and present', p_first_block, p_last_block;
    END IF;
    SELECT greatest(v_newest, max(occurred_at)) INTO v_newest
        FROM audit_auditevent WHERE seq BETWEEN v_first_seq AND v_last_seq;
    IF v_newest >= now() - make_interval(days => floor_days) THEN
        RAISE EXCEPTION 'audit purge refused: blocks % to % hold events younger than the % day retention floor',
            p_first_block, p_last_block, floor_days;
    END IF;
    IF EXISTS (
        SELECT 1 FROM audit_legalhold h
        WHERE h.released_at IS NULL
          AND (h.tenant_slug = '*' OR h.tenant_slug IN (
              SELECT DISTINCT e.tenant_slug FROM audit_auditevent e WHERE e.seq BETWEEN v_first_seq AND v_last_seq))
    ) THEN
        RAISE EXCEPTION 'audit purge refused: a legal hold covers blocks % to %', p_first_block, p_last_block;
    END IF;
    DELETE FROM audit_auditevent WHERE seq BETWEEN v_first_seq AND v_last_seq;
    GET DIAGNOSTICS v_removed = ROW_COUNT;
    DELETE FROM audit_sealedblock WHERE number BETWEEN p_first_block AND p_last_block;
    RETURN v_removed;
END;
$$;
"""


def _sqlite_triggers(table: str) -> list[str]:
    message = f"audit trail is append-only: %s on {table} is not allowed"
    return [
        f'CREATE TRIGGER {table}_append_only_update BEFORE UPDATE ON "{table}" '
        f"BEGIN SELECT RAISE(ABORT, '{message % 'UPDATE'}'); END",
        f'CREATE TRIGGER {table}_append_only_delete BEFORE DELETE ON "{table}" '
        f"WHEN NOT maas_audit_purge_active() BEGIN SELECT RAISE(ABORT, '{message % 'DELETE'}'); END",
    ]


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT current_schema()")
            schema = cursor.fetchone()[0]
        # params=None: the bodies contain % placeholders of RAISE, not query parameters.
        schema_editor.execute(GUARD_FUNCTION.replace("%%", "%"), params=None)
        floor = int(settings.AUDIT_RETENTION_FLOOR_DAYS)
        schema_editor.execute(PURGE_FUNCTION.format(schema=schema, floor_days=floor), params=None)
        # Nobody may call it by default; db_grants grants EXECUTE to the application role.
        schema_editor.execute("REVOKE ALL ON FUNCTION audit_purge_blocks(bigint, bigint) FROM PUBLIC")
    elif vendor == "sqlite":
        for table in SEALED:
            for statement in _sqlite_triggers(table):
                schema_editor.execute(statement)


def remove(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS audit_purge_blocks(bigint, bigint)")
        # Back to 0003's guard (with the session-setting bypass it had).
        schema_editor.execute(
            """
CREATE OR REPLACE FUNCTION audit_append_only_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('maas.audit_purge', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'TRUNCATE' AND current_setting('maas.audit_flush', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit trail is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME;
END;
$$;
""",
            params=None,
        )
    elif vendor == "sqlite":
        for table in SEALED:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only_update")
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only_delete")


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_request_id_plain_index")]

    operations = [migrations.RunPython(install, remove)]
