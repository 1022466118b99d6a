"""Storage for policy formulation and human oversight.

``Policy`` is the editable head (scope, window, enabled) pointing at its
current ``PolicyVersion``; versions are immutable snapshots with author,
reason and diff, kept forever so that any past decision can be explained by
the exact rules that made it.  ``KillSwitch`` rows are the operator's
immediate blocks, engaged and lifted only by recorded actions.
``ReviewItem`` is the human-oversight queue (EU AI Act Art. 14).

Tenants and models are referred to by slug and name, never by foreign key:
these records must outlive what they describe, and apps stay decoupled.
"""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

POLICY_NAME_VALIDATOR = RegexValidator(
    r"^[a-z0-9][a-z0-9:._-]{0,63}$",
    "Use 1-64 lowercase letters, digits, ':', '.', '_' or '-', starting with a letter or digit.",
)


class Policy(models.Model):
    """A named set of rules for a scope, effective within a window; edited only through versions."""

    class Scope(models.TextChoices):
        GLOBAL = "global", "Global (every request)"
        TENANT = "tenant", "One tenant"
        MODEL = "model", "One model"

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[POLICY_NAME_VALIDATOR],
        help_text="Stable name; decisions record it as name@version.",
    )
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.GLOBAL)
    tenant_slug = models.CharField(max_length=64, blank=True, default="", help_text="For tenant scope.")
    model_name = models.CharField(max_length=100, blank=True, default="", help_text="For model scope.")
    enabled = models.BooleanField(default=True)
    effective_from = models.DateTimeField(null=True, blank=True, help_text="Empty: in force from the start.")
    effective_until = models.DateTimeField(null=True, blank=True, help_text="Empty: no end.")
    current_version = models.ForeignKey(
        "PolicyVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["scope", "name"]
        verbose_name_plural = "policies"
        constraints = [
            models.CheckConstraint(
                name="policy_scope_target",
                condition=(
                    Q(scope="global", tenant_slug="", model_name="")
                    | (Q(scope="tenant", model_name="") & ~Q(tenant_slug=""))
                    | (Q(scope="model", tenant_slug="") & ~Q(model_name=""))
                ),
                violation_error_message=(
                    "A tenant policy needs a tenant slug, a model policy a model name, a global policy neither."
                ),
            ),
            models.CheckConstraint(
                name="policy_window_order",
                condition=Q(effective_from__isnull=True)
                | Q(effective_until__isnull=True)
                | Q(effective_until__gt=models.F("effective_from")),
                violation_error_message="effective_until must be later than effective_from.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def target(self) -> str:
        """The tenant slug or model name this policy is scoped to ("" when global)."""
        return self.tenant_slug if self.scope == self.Scope.TENANT else self.model_name

    @property
    def version_number(self) -> int | None:
        """The current version's number, or ``None`` before the first version."""
        return self.current_version.number if self.current_version_id else None


class ImmutableQuerySet(models.QuerySet):
    """Bulk updates and deletes are refused: history is never rewritten."""

    def update(self, **kwargs):
        raise TypeError(f"{self.model.__name__} rows are immutable")

    def delete(self):
        raise TypeError(f"{self.model.__name__} rows are immutable")


class PolicyVersion(models.Model):
    """One immutable snapshot of a policy: its rules and window, who changed it, why, and the diff."""

    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    document = models.JSONField(help_text="The rules: a list of {id, type, mode, params}.")
    enabled = models.BooleanField(default=True)
    effective_from = models.DateTimeField(null=True, blank=True)
    effective_until = models.DateTimeField(null=True, blank=True)
    author = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    reason = models.TextField()
    diff = models.TextField(blank=True, default="", help_text="Unified diff against the previous version.")

    objects = ImmutableQuerySet.as_manager()

    class Meta:
        ordering = ["policy__name", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "number"], name="policy_version_unique_number"),
            models.CheckConstraint(name="policy_version_reason_required", condition=~Q(reason="")),
        ]

    def __str__(self) -> str:
        return self.label

    def save(self, *args, **kwargs):
        """Insert only: an existing version is never changed."""
        if not self._state.adding:
            raise TypeError("PolicyVersion rows are immutable; create a new version instead")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        """Versions are kept forever (they explain past decisions)."""
        raise TypeError("PolicyVersion rows are immutable")

    @property
    def label(self) -> str:
        """How decisions name this version: ``name@number``."""
        return f"{self.policy.name}@{self.number}"


class KillSwitch(models.Model):
    """An immediate block of a tenant, an API key (by prefix) or a model, until lifted."""

    class TargetType(models.TextChoices):
        TENANT = "tenant", "Tenant (slug)"
        KEY = "key", "API key (prefix)"
        MODEL = "model", "Model (name)"

    target_type = models.CharField(max_length=8, choices=TargetType.choices)
    target = models.CharField(max_length=100, help_text="Tenant slug, API key prefix or model name.")
    reason = models.TextField(help_text="Mandatory: why the block was engaged.")
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    lifted_by = models.CharField(max_length=200, blank=True, default="")
    lifted_at = models.DateTimeField(null=True, blank=True)
    lift_reason = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "kill switch"
        verbose_name_plural = "kill switches"
        constraints = [
            models.UniqueConstraint(
                fields=["target_type", "target"],
                condition=Q(lifted_at__isnull=True),
                name="kill_switch_one_active_per_target",
                violation_error_message="A kill switch for this target is already engaged.",
            ),
            models.CheckConstraint(name="kill_switch_reason_required", condition=~Q(reason="")),
            models.CheckConstraint(
                name="kill_switch_lift_recorded",
                condition=Q(lifted_at__isnull=True) | (~Q(lift_reason="") & ~Q(lifted_by="")),
            ),
        ]

    def __str__(self) -> str:
        state = "lifted" if self.lifted_at else "active"
        return f"{self.target_type}:{self.target} ({state})"

    @property
    def active(self) -> bool:
        """True until lifted."""
        return self.lifted_at is None


class ReviewItem(models.Model):
    """A low-confidence prediction waiting for (or given) human review."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        REVIEWED = "reviewed", "Reviewed"
        ESCALATED = "escalated", "Escalated"

    class Decision(models.TextChoices):
        CONFIRMED = "confirmed", "Confirmed: the prediction is right"
        OVERRIDDEN = "overridden", "Overridden: the correct label is another"
        ESCALATED = "escalated", "Escalated: needs a second opinion"

    audit_seq = models.BigIntegerField(db_index=True, help_text="AuditEvent.seq of the request.")
    instance_index = models.PositiveIntegerField(default=0, help_text="Position of the instance in its request.")
    probabilities = models.JSONField(default=list, blank=True, help_text="Class probabilities, rounded to 4 places.")
    request_id = models.CharField(max_length=128, db_index=True)
    tenant_id = models.BigIntegerField(null=True, blank=True)
    tenant_slug = models.CharField(max_length=64)
    key_prefix = models.CharField(max_length=64, blank=True, default="")
    model_name = models.CharField(max_length=100)
    model_version = models.PositiveIntegerField()
    label = models.CharField(max_length=100)
    top_probability = models.FloatField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    decision = models.CharField(max_length=16, choices=Decision.choices, blank=True, default="")
    corrected_label = models.CharField(max_length=100, blank=True, default="")
    reviewer = models.CharField(max_length=200, blank=True, default="")
    note = models.TextField(blank=True, default="")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["status", "created_at"]
        indexes = [models.Index(fields=["status", "created_at"], name="review_status_time")]
        constraints = [
            models.CheckConstraint(
                name="review_item_reviewed_has_note",
                condition=Q(status="pending") | (~Q(note="") & ~Q(reviewer="") & Q(reviewed_at__isnull=False)),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} #{self.instance_index} {self.model_name}@{self.model_version} ({self.status})"
