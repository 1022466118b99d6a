"""BatchJob moves from the gateway app to jobs: state only, the table ``gateway_batchjob`` and its rows stay."""

import uuid

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    # The table was created by gateway 0002; an existing database keeps it and its rows.
    dependencies = [("gateway", "0002_batchjob")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="BatchJob",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("tenant_id", models.BigIntegerField(db_index=True)),
                        ("tenant_slug", models.CharField(max_length=64)),
                        ("key_id", models.BigIntegerField()),
                        ("key_prefix", models.CharField(max_length=64)),
                        ("idempotency_key", models.CharField(blank=True, default="", max_length=200)),
                        ("request_digest", models.CharField(max_length=64)),
                        ("model_name", models.CharField(max_length=100)),
                        ("model_version", models.PositiveIntegerField()),
                        ("model_sha256", models.CharField(max_length=64)),
                        ("purpose", models.CharField(blank=True, default="", max_length=100)),
                        ("policy_versions", models.CharField(blank=True, default="", max_length=300)),
                        ("review_threshold", models.FloatField(blank=True, null=True)),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("queued", "Queued"),
                                    ("running", "Running"),
                                    ("succeeded", "Succeeded"),
                                    ("failed", "Failed"),
                                    ("cancelled", "Cancelled"),
                                ],
                                db_index=True,
                                default="queued",
                                max_length=16,
                            ),
                        ),
                        ("total", models.PositiveIntegerField()),
                        ("done", models.PositiveIntegerField(default=0)),
                        ("needs_review", models.PositiveIntegerField(default=0)),
                        ("units_reserved", models.PositiveIntegerField(default=0)),
                        ("units_refunded", models.PositiveIntegerField(default=0)),
                        ("quota_state", models.JSONField(blank=True, default=dict)),
                        ("cancel_requested", models.BooleanField(default=False)),
                        ("attempts", models.PositiveIntegerField(default=0)),
                        ("lease_owner", models.CharField(blank=True, default="", max_length=100)),
                        ("lease_expires_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "completions",
                            models.PositiveIntegerField(
                                default=0, help_text="Times the job reached a final state (must be 1)."
                            ),
                        ),
                        ("error", models.TextField(blank=True, default="")),
                        ("request_id", models.CharField(blank=True, default="", max_length=128)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("started_at", models.DateTimeField(blank=True, null=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        "db_table": "gateway_batchjob",
                        "ordering": ["-created_at"],
                        "constraints": [
                            models.UniqueConstraint(
                                condition=models.Q(("idempotency_key", ""), _negated=True),
                                fields=("tenant_id", "idempotency_key"),
                                name="batchjob_idempotency_per_tenant",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
