"""The audit trail's storage.

``AuditEvent`` is the record regulators ask for (EU AI Act Art. 12, China's
Cybersecurity Law Art. 21): one row per API request that reached
authentication and per configuration change.  Rows are append-only; tamper
evidence comes from sealing them into signed Merkle blocks.  Tenants are kept
as plain ids and slugs, not foreign keys, because the record must outlive the
tenant it describes.
"""

from __future__ import annotations

import uuid

from django.db import models


class AuditEvent(models.Model):
    """One immutable audit record; ``seq`` is the monotonically increasing sequence."""

    class Type(models.TextChoices):
        REQUEST = "request", "API request"
        CONFIG_CHANGE = "config.change", "Configuration change"
        KEY_LIFECYCLE = "key.lifecycle", "API key lifecycle"
        MODEL_LIFECYCLE = "model.lifecycle", "Model lifecycle"
        POLICY_CHANGE = "policy.change", "Policy change"
        KILL_SWITCH = "policy.kill_switch", "Kill switch"
        REVIEW = "policy.review", "Human review"
        JOB = "job", "Batch job"
        EXPORT = "audit.export", "Audit export"
        PURGE = "audit.purge", "Audit purge"
        LEGAL_HOLD = "audit.legal_hold", "Legal hold"

    seq = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    occurred_at = models.DateTimeField(db_index=True)
    event_type = models.CharField(max_length=32, choices=Type.choices)
    action = models.CharField(max_length=64, blank=True, default="")
    request_id = models.CharField(max_length=128, blank=True, default="", db_index=True)
    actor = models.CharField(max_length=200, blank=True, default="")
    tenant_id = models.BigIntegerField(null=True, blank=True)
    tenant_slug = models.CharField(max_length=64, blank=True, default="")
    key_prefix = models.CharField(max_length=64, blank=True, default="")
    method = models.CharField(max_length=8, blank=True, default="")
    path = models.CharField(max_length=300, blank=True, default="")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    model_name = models.CharField(max_length=100, blank=True, default="")
    model_version = models.PositiveIntegerField(null=True, blank=True)
    model_sha256 = models.CharField(max_length=64, blank=True, default="")
    decision = models.CharField(max_length=16, blank=True, default="")
    rule_id = models.CharField(max_length=100, blank=True, default="")
    reason_code = models.CharField(max_length=64, blank=True, default="")
    policy_versions = models.CharField(max_length=300, blank=True, default="")
    monitor_denials = models.JSONField(default=list, blank=True)
    purpose = models.CharField(max_length=100, blank=True, default="")
    region = models.CharField(max_length=16, blank=True, default="")
    input_digest = models.CharField(max_length=64, blank=True, default="")
    units = models.IntegerField(default=0, help_text="Instances charged against quota (negative for refunds).")
    prediction = models.JSONField(null=True, blank=True)
    needs_review = models.BooleanField(default=False)
    quota_fail_open = models.BooleanField(default=False)
    error_code = models.CharField(max_length=64, blank=True, default="")
    raw_input = models.JSONField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["seq"]
        indexes = [
            models.Index(fields=["tenant_id", "occurred_at"], name="audit_tenant_time"),
            models.Index(fields=["event_type", "occurred_at"], name="audit_type_time"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.event_type} {self.action} {self.tenant_slug}"
