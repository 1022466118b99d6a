"""PostgreSQL triggers that make the audit tables append-only.

UPDATE, DELETE and TRUNCATE on audit events, sealed blocks and purge
tombstones are rejected by the database itself, so neither a bulk ORM call,
a stray script nor the admin can rewrite history.  The retention purge is the
only sanctioned writer of DELETE (it sets ``maas.audit_purge`` for its own
transaction); TRUNCATE passes only with ``maas.audit_flush``, which only the
test framework's whole-database flush sets (see ``audit.db``).  SQLite
has no such triggers: the ORM guard and the seals still apply there.

Statement-level triggers: an UPDATE or DELETE is refused even when it would
touch no row, and the purge's DELETEs pay no per-row trigger cost.

The SQL is frozen here (not imported) so later code changes cannot alter
what this migration did.
"""

from django.db import migrations

TABLES = ("audit_auditevent", "audit_sealedblock", "audit_purgetombstone")

GUARD_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_append_only_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('maas.audit_purge', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'TRUNCATE' AND current_setting('maas.audit_flush', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit trail is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING HINT = 'Audit rows are removed only by the retention purge (manage.py purge_audit).';
END;
$$;
"""


def install(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # params=None: the function body contains % placeholders of RAISE, not query parameters.
    schema_editor.execute(GUARD_FUNCTION, params=None)
    for table in TABLES:
        schema_editor.execute(
            f'CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON "{table}" '
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only_guard()"
        )
        schema_editor.execute(
            f'CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON "{table}" '
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only_guard()"
        )


def remove(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f'DROP TRIGGER IF EXISTS {table}_append_only ON "{table}"')
        schema_editor.execute(f'DROP TRIGGER IF EXISTS {table}_no_truncate ON "{table}"')
    schema_editor.execute("DROP FUNCTION IF EXISTS audit_append_only_guard()")


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_sealing_exports_retention")]

    operations = [migrations.RunPython(install, remove)]
