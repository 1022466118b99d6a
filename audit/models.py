"""The audit trail's storage.

``AuditEvent`` is the record regulators ask for (EU AI Act Art. 12, China's
Cybersecurity Law Art. 21): one row per API request that reached
authentication and per configuration change.  Rows are append-only; tamper
evidence comes from sealing them into signed Merkle blocks (``SealedBlock``),
and lawful removal after the retention period leaves a signed
``PurgeTombstone``.  Tenants are kept as plain ids and slugs, not foreign
keys, because the record must outlive the tenant it describes.

Append-only is enforced three times: the ORM (querysets refuse ``update()``
and ``delete()``, instances refuse re-saving and deletion), the admin
(read-only), and on PostgreSQL triggers that reject UPDATE, DELETE and
TRUNCATE except inside the purge procedure (migration 0003).

On PostgreSQL the event table is partitioned by month of ``recorded_at``
(migration 0010, :mod:`audit.services.partitions`): the database's primary key
is ``(seq, recorded_at)``, the model's pk is still ``seq``.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models.functions import Now

from audit.blocks import BLOCK_HEADER_FIELDS, GENESIS_HASH, TOMBSTONE_HEADER_FIELDS
from audit.canonical import timestamp_text
from audit.errors import AuditRecordImmutable

RETENTION_FLOOR_DAYS = settings.AUDIT_RETENTION_FLOOR_DAYS


class AppendOnlyQuerySet(models.QuerySet):
    """A queryset that can read and insert but never update or delete rows."""

    def update(self, **kwargs: Any) -> int:
        """Refused: audit rows never change."""
        raise AuditRecordImmutable(f"{self.model.__name__} rows are append-only: update() is refused.")

    def delete(self) -> tuple[int, dict[str, int]]:
        """Refused: only the retention purge removes rows (with raw SQL and a signed tombstone)."""
        raise AuditRecordImmutable(
            f"{self.model.__name__} rows are append-only: delete() is refused; "
            "events leave only through the retention purge."
        )

    # Django's own bulk paths that would modify rows funnel into update().
    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        """Refused, like ``update()``."""
        raise AuditRecordImmutable(f"{self.model.__name__} rows are append-only: bulk_update() is refused.")


class AppendOnlyModel(models.Model):
    """Base for audit tables: insert once, never change, never delete through the ORM."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Insert a new row; saving an already stored row is refused."""
        if not self._state.adding:
            raise AuditRecordImmutable(f"{type(self).__name__} #{self.pk} is append-only: it cannot be changed.")
        # force_insert: with an explicit primary key Django would otherwise try
        # an UPDATE first, which could overwrite an existing row.
        kwargs["force_insert"] = True
        kwargs.pop("force_update", None)
        kwargs.pop("update_fields", None)
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        """Always refused: removal happens only in the retention purge."""
        raise AuditRecordImmutable(f"{type(self).__name__} #{self.pk} is append-only: it cannot be deleted.")


class AuditEvent(AppendOnlyModel):
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
        CHAIN_START = "audit.chain_start", "Audit chain start"
        ALARM = "audit.alarm", "Audit alarm"
        VERIFY = "audit.verify", "Audit verification"
        MONITORING = "monitoring", "Post-market monitoring"

    seq = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    occurred_at = models.DateTimeField(db_index=True)
    # Set by the database at INSERT: the sealer's safety lag is measured on it,
    # because callers may backdate occurred_at to the request's arrival.
    recorded_at = models.DateTimeField(db_default=Now(), editable=False)
    event_type = models.CharField(max_length=32, choices=Type.choices)
    action = models.CharField(max_length=64, blank=True, default="")
    # Looked up by equality only: a Meta index, not db_index, which on PostgreSQL
    # adds a second (varchar_pattern_ops) index that every INSERT would maintain.
    request_id = models.CharField(max_length=128, blank=True, default="")
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
            models.Index(fields=["request_id"], name="audit_request_id"),
        ]
        # Nobody is ever granted add/change/delete: there are no such permissions.
        default_permissions = ("view",)
        permissions = [("export_auditevent", "Can export audit events")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.event_type} {self.action} {self.tenant_slug}"


class SealState(models.Model):
    """Singleton head of the seal chain; its row lock is the only lock sealers share.

    Request handling never touches this row, so sealing cannot serialise
    requests.  It is bookkeeping, not evidence: ``verify_audit`` trusts only
    blocks and tombstones (and rebuilds this row if it is lost).
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    head_number = models.BigIntegerField(default=0)
    head_hash = models.CharField(max_length=64, default=GENESIS_HASH)
    head_last_seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return f"head block {self.head_number} (seq {self.head_last_seq})"


class SealedBlock(AppendOnlyModel):
    """A signed block over the events ``first_seq..last_seq`` (minus ``gaps``)."""

    number = models.BigIntegerField(primary_key=True)
    canonical_version = models.PositiveSmallIntegerField(default=1)
    first_seq = models.BigIntegerField(unique=True)
    last_seq = models.BigIntegerField(db_index=True)
    count = models.PositiveIntegerField()
    gaps = models.JSONField(default=list, blank=True, help_text="[first, last] seq ranges that held no event.")
    first_occurred_at = models.DateTimeField()
    last_occurred_at = models.DateTimeField(db_index=True)
    merkle_root = models.CharField(max_length=64)
    prev_block_hash = models.CharField(max_length=64)
    block_hash = models.CharField(max_length=64, unique=True)
    signature = models.CharField(max_length=128)
    key_id = models.CharField(max_length=64, help_text="SHA-256 fingerprint of the Ed25519 public key.")
    sealed_at = models.DateTimeField()
    # Per-event leaf hashes (32 bytes each) and event ids (16 bytes each), in
    # leaf order: they let the verifier name the exact event that changed.
    leaf_hashes = models.BinaryField()
    event_ids = models.BinaryField()

    class Meta:
        ordering = ["number"]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"block {self.number} (seq {self.first_seq}-{self.last_seq}, {self.count} events)"

    def header(self) -> dict[str, Any]:
        """The signed header, exactly as the sealer built it."""
        header = {
            "kind": "block",
            "v": self.canonical_version,
            "number": self.number,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "count": self.count,
            "gaps": [list(g) for g in self.gaps],
            "first_occurred_at": timestamp_text(self.first_occurred_at),
            "last_occurred_at": timestamp_text(self.last_occurred_at),
            "merkle_root": self.merkle_root,
            "prev_block_hash": self.prev_block_hash,
            "sealed_at": timestamp_text(self.sealed_at),
            "key_id": self.key_id,
        }
        return {name: header[name] for name in BLOCK_HEADER_FIELDS}


class PurgeTombstone(AppendOnlyModel):
    """Signed record of sealed blocks removed by the retention purge."""

    first_block = models.BigIntegerField(unique=True)
    last_block = models.BigIntegerField()
    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField()
    block_count = models.PositiveIntegerField()
    event_count = models.PositiveIntegerField()
    removed_root = models.CharField(max_length=64, help_text="Merkle root over the removed blocks' hashes.")
    prev_block_hash = models.CharField(max_length=64)
    last_block_hash = models.CharField(max_length=64)
    tenants = models.JSONField(default=dict, help_text="Events removed per tenant slug.")
    reason = models.CharField(max_length=200)
    actor = models.CharField(max_length=200)
    purged_at = models.DateTimeField()
    key_id = models.CharField(max_length=64)
    signature = models.CharField(max_length=128)
    tombstone_hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["first_block"]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"purged blocks {self.first_block}-{self.last_block} ({self.event_count} events)"

    def header(self) -> dict[str, Any]:
        """The signed header."""
        header = {
            "kind": "tombstone",
            "v": 1,
            "first_block": self.first_block,
            "last_block": self.last_block,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "block_count": self.block_count,
            "event_count": self.event_count,
            "removed_root": self.removed_root,
            "prev_block_hash": self.prev_block_hash,
            "last_block_hash": self.last_block_hash,
            "tenants": dict(self.tenants),
            "reason": self.reason,
            "actor": self.actor,
            "purged_at": timestamp_text(self.purged_at),
            "key_id": self.key_id,
        }
        return {name: header[name] for name in TOMBSTONE_HEADER_FIELDS}


class AuditExport(models.Model):
    """One export of the trail (command, REST, admin or background), with its manifest."""

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        JSONL = "jsonl", "JSON Lines"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    requested_by = models.CharField(max_length=200)
    source = models.CharField(max_length=16, default="admin")
    filters = models.JSONField(default=dict, blank=True)
    format = models.CharField(max_length=8, choices=Format.choices, default=Format.CSV)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    progress = models.FloatField(default=0.0, help_text="0..1, from rows written over the estimate.")
    estimated_rows = models.BigIntegerField(default=0)
    row_count = models.BigIntegerField(default=0)
    file_path = models.CharField(max_length=500, blank=True, default="")
    sha256 = models.CharField(max_length=64, blank=True, default="")
    manifest = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"export #{self.pk} ({self.format}, {self.status})"


class TenantRetention(models.Model):
    """How long a tenant's audit events are kept (never below the legal floor)."""

    tenant_slug = models.CharField(max_length=64, unique=True)
    retention_days = models.PositiveIntegerField(validators=[MinValueValidator(RETENTION_FLOOR_DAYS)])
    updated_by = models.CharField(max_length=200, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant_slug"]
        constraints = [
            # The floor is law (EU AI Act Art. 19/26(6), China CSL Art. 21), so
            # the database enforces it too, whatever code writes the row.
            models.CheckConstraint(
                condition=models.Q(retention_days__gte=RETENTION_FLOOR_DAYS),
                name="audit_retention_at_least_floor",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_slug}: {self.retention_days} days"


class LegalHold(models.Model):
    """A hold that stops the purge for a tenant (``*`` holds every tenant)."""

    ALL_TENANTS = "*"

    tenant_slug = models.CharField(max_length=64, db_index=True)
    reason = models.TextField()
    placed_by = models.CharField(max_length=200)
    placed_at = models.DateTimeField(auto_now_add=True)
    released_by = models.CharField(max_length=200, blank=True, default="")
    released_at = models.DateTimeField(null=True, blank=True)
    released_reason = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-placed_at"]

    def __str__(self) -> str:
        state = "released" if self.released_at else "active"
        return f"hold on {self.tenant_slug} ({state})"

    @property
    def active(self) -> bool:
        """True until released."""
        return self.released_at is None


class RetentionKey(models.Model):
    """The AES-256-GCM key of one tenant's raw inputs for one retention period and expiry day.

    Raw inputs that a ``data_minimisation`` rule lets a tenant keep are
    encrypted under the key of (tenant, retention period, day of expiry); the
    key is destroyed when that day comes (crypto-shredding), which makes every
    copy of the ciphertext unreadable at once while the sealed audit record,
    which only holds the input's keyed digest, still verifies.
    """

    label = models.CharField(max_length=140, unique=True, help_text="tenant/<days>d/<expiry day>")
    tenant_id = models.BigIntegerField(null=True, blank=True)
    tenant_slug = models.CharField(max_length=64, db_index=True)
    retention_days = models.PositiveIntegerField()
    expires_at = models.DateTimeField(db_index=True)
    material = models.BinaryField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    destroyed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["expires_at"]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"retention key {self.label} ({'destroyed' if self.destroyed_at else 'live'})"


class RetainedInput(models.Model):
    """One request's raw input, kept outside the sealed record and encrypted under a ``RetentionKey``.

    The audit event commits to it by ``input_digest`` (the keyed digest it
    already carries) and by this row's id in its ``detail``.
    """

    key = models.ForeignKey(RetentionKey, on_delete=models.PROTECT, related_name="inputs")
    request_id = models.CharField(max_length=128, blank=True, default="")
    input_digest = models.CharField(max_length=64)
    nonce = models.BinaryField(editable=False)
    ciphertext = models.BinaryField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"retained input {self.pk} under {self.key_id}"


class ShreddingTombstone(AppendOnlyModel):
    """Signed record of a destroyed retention key: what became unrecoverable, and when."""

    key_label = models.CharField(max_length=140, unique=True)
    tenant_slug = models.CharField(max_length=64)
    retention_days = models.PositiveIntegerField()
    key_expires_at = models.DateTimeField()
    input_count = models.PositiveIntegerField()
    inputs_root = models.CharField(max_length=64, help_text="Merkle root over the destroyed inputs' keyed digests.")
    reason = models.CharField(max_length=200)
    actor = models.CharField(max_length=200)
    destroyed_at = models.DateTimeField()
    key_id = models.CharField(max_length=64)
    signature = models.CharField(max_length=128)
    tombstone_hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["destroyed_at"]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"shredded {self.key_label} ({self.input_count} inputs)"

    def header(self) -> dict[str, Any]:
        """The signed header (same canonical encoding and signature as the purge tombstone's)."""
        return {
            "kind": "shredding",
            "v": 1,
            "key_label": self.key_label,
            "tenant_slug": self.tenant_slug,
            "retention_days": self.retention_days,
            "key_expires_at": timestamp_text(self.key_expires_at),
            "input_count": self.input_count,
            "inputs_root": self.inputs_root,
            "reason": self.reason,
            "actor": self.actor,
            "destroyed_at": timestamp_text(self.destroyed_at),
            "key_id": self.key_id,
        }
