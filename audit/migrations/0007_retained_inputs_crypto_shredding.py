"""Raw inputs kept under a data-minimisation rule, encrypted per tenant/period key, and shredding tombstones.

The tombstone table is guarded like the other sealed tables (0003, 0006).
"""

import django.db.models.deletion
from django.db import migrations, models

TABLE = "audit_shreddingtombstone"


def guard(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(
            f'CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON "{TABLE}" '
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only_guard()"
        )
        schema_editor.execute(
            f'CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON "{TABLE}" '
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only_guard()"
        )
    elif vendor == "sqlite":
        message = f"audit trail is append-only: %s on {TABLE} is not allowed"
        schema_editor.execute(
            f'CREATE TRIGGER {TABLE}_append_only_update BEFORE UPDATE ON "{TABLE}" '
            f"BEGIN SELECT RAISE(ABORT, '{message % 'UPDATE'}'); END"
        )
        schema_editor.execute(
            f'CREATE TRIGGER {TABLE}_append_only_delete BEFORE DELETE ON "{TABLE}" '
            f"WHEN NOT maas_audit_purge_active() BEGIN SELECT RAISE(ABORT, '{message % 'DELETE'}'); END"
        )


def unguard(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    suffixes = (
        ("append_only", "no_truncate") if vendor == "postgresql" else ("append_only_update", "append_only_delete")
    )
    for suffix in suffixes:
        on = f' ON "{TABLE}"' if vendor == "postgresql" else ""
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_{suffix}{on}")


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0006_purge_function_and_sqlite_guards"),
    ]

    operations = [
        migrations.CreateModel(
            name="RetentionKey",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("label", models.CharField(help_text="tenant/<days>d/<expiry day>", max_length=140, unique=True)),
                ("tenant_id", models.BigIntegerField(blank=True, null=True)),
                ("tenant_slug", models.CharField(db_index=True, max_length=64)),
                ("retention_days", models.PositiveIntegerField()),
                ("expires_at", models.DateTimeField(db_index=True)),
                ("material", models.BinaryField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("destroyed_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "ordering": ["expires_at"],
                "default_permissions": ("view",),
            },
        ),
        migrations.CreateModel(
            name="ShreddingTombstone",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("key_label", models.CharField(max_length=140, unique=True)),
                ("tenant_slug", models.CharField(max_length=64)),
                ("retention_days", models.PositiveIntegerField()),
                ("key_expires_at", models.DateTimeField()),
                ("input_count", models.PositiveIntegerField()),
                (
                    "inputs_root",
                    models.CharField(help_text="Merkle root over the destroyed inputs' keyed digests.", max_length=64),
                ),
                ("reason", models.CharField(max_length=200)),
                ("actor", models.CharField(max_length=200)),
                ("destroyed_at", models.DateTimeField()),
                ("key_id", models.CharField(max_length=64)),
                ("signature", models.CharField(max_length=128)),
                ("tombstone_hash", models.CharField(max_length=64, unique=True)),
            ],
            options={
                "ordering": ["destroyed_at"],
                "default_permissions": ("view",),
            },
        ),
        migrations.CreateModel(
            name="RetainedInput",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("request_id", models.CharField(blank=True, default="", max_length=128)),
                ("input_digest", models.CharField(max_length=64)),
                ("nonce", models.BinaryField()),
                ("ciphertext", models.BinaryField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "key",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="inputs", to="audit.retentionkey"
                    ),
                ),
            ],
            options={
                "ordering": ["id"],
                "default_permissions": ("view",),
            },
        ),
        migrations.RunPython(guard, unguard),
    ]
