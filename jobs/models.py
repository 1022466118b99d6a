"""The batch job record: state, progress, ownership lease and files."""

from __future__ import annotations

import uuid

from django.db import models


class BatchJob(models.Model):
    """One asynchronous batch prediction owned by a tenant."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.BigIntegerField(db_index=True)
    tenant_slug = models.CharField(max_length=64)
    key_id = models.BigIntegerField()
    key_prefix = models.CharField(max_length=64)
    idempotency_key = models.CharField(max_length=200, blank=True, default="")
    request_digest = models.CharField(max_length=64)
    model_name = models.CharField(max_length=100)
    model_version = models.PositiveIntegerField()
    model_sha256 = models.CharField(max_length=64)
    purpose = models.CharField(max_length=100, blank=True, default="")
    policy_versions = models.CharField(max_length=300, blank=True, default="")
    review_threshold = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    total = models.PositiveIntegerField()
    done = models.PositiveIntegerField(default=0)
    needs_review = models.PositiveIntegerField(default=0)
    units_reserved = models.PositiveIntegerField(default=0)
    units_refunded = models.PositiveIntegerField(default=0)
    quota_state = models.JSONField(default=dict, blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    lease_owner = models.CharField(max_length=100, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    completions = models.PositiveIntegerField(default=0, help_text="Times the job reached a final state (must be 1).")
    error = models.TextField(blank=True, default="")
    error_code = models.CharField(
        max_length=64, blank=True, default="", help_text="Stable code of the failure or refusal that ended the job."
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text="When a succeeded job's results are deleted.")
    results_deleted_at = models.DateTimeField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table created by gateway 0002; the model moved here state-only (jobs 0001).
        db_table = "gateway_batchjob"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant_id", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="batchjob_idempotency_per_tenant",
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.id} ({self.status} {self.done}/{self.total})"
