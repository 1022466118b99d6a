"""The model registry: every ONNX file the gateway may serve, and the training runs that produce them.

A :class:`ModelVersion` row is the governed record of one file in the model
store (``<MODEL_STORE_DIR>/<name>/<version>/model.onnx``, the layout of a
Triton model repository): its checksum, the signature read from the ONNX
graph, the declared input range, metrics, lineage (EU AI Act Annex IV asks
for versions, data and change management), risk tier and deployment region
(used by policy), and its lifecycle status.  The database itself guarantees
at most one active version per name, so two concurrent activations can never
leave two versions serving.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

#: Model names become directory names and URL segments: keep them boring.
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,99}$"
model_name_validator = RegexValidator(
    MODEL_NAME_PATTERN, "Model names are lowercase letters, digits, '.', '_' and '-', starting with a letter or digit."
)


class RiskTier(models.TextChoices):
    """EU AI Act risk tiers; policy rules key on them."""

    MINIMAL = "minimal", "Minimal risk"
    LIMITED = "limited", "Limited risk"
    HIGH = "high", "High risk"
    PROHIBITED = "prohibited", "Prohibited"


class OutputKind(models.TextChoices):
    """How a version's primary output is read (the values of :class:`inference.signature.OutputKind`)."""

    PROBABILITIES = "probabilities", "Class probabilities"
    LOGITS = "logits", "Class logits (softmax applied)"
    REGRESSION = "regression", "Regression values"
    TENSOR = "tensor", "Raw tensors"


class ModelVersion(models.Model):
    """One registered, checksummed ONNX file and everything governance needs to know about it."""

    class Status(models.TextChoices):
        STAGED = "staged", "Staged"
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    name = models.CharField(max_length=100, validators=[model_name_validator])
    version = models.PositiveIntegerField()
    file_path = models.CharField(max_length=300, help_text="Relative to MODEL_STORE_DIR: <name>/<version>/model.onnx.")
    sha256 = models.CharField(max_length=64)
    file_size = models.BigIntegerField()
    signature = models.JSONField(default=dict, help_text="Inputs and outputs read from the ONNX graph.")
    input_width = models.PositiveIntegerField()
    value_min = models.FloatField(help_text="Smallest raw input value the model accepts.")
    value_max = models.FloatField(help_text="Largest raw input value the model accepts.")
    labels = models.JSONField(default=list, help_text="Class label of each output column (integers or strings).")
    output_kind = models.CharField(
        max_length=16,
        choices=OutputKind.choices,
        default=OutputKind.PROBABILITIES,
        help_text="How the primary output is read: class probabilities, logits, regression values or raw tensors.",
    )
    plausible_min = models.FloatField(
        null=True, blank=True, help_text="Regression: values below it need human review (model card)."
    )
    plausible_max = models.FloatField(
        null=True, blank=True, help_text="Regression: values above it need human review (model card)."
    )
    metrics = models.JSONField(default=dict, blank=True)
    lineage = models.JSONField(default=dict, blank=True)
    risk_tier = models.CharField(max_length=16, choices=RiskTier.choices, default=RiskTier.LIMITED)
    region = models.CharField(max_length=16, default="eu", help_text="Deployment region (data residency).")
    model_card = models.TextField(
        blank=True, default="", help_text="Free-text notes of the model card (the structured fields are in card)."
    )
    card = models.JSONField(
        default=dict,
        blank=True,
        help_text="Structured model card fields stated by the operator (inference.model_card.STATED_FIELDS).",
    )
    reference_profile = models.JSONField(
        null=True,
        blank=True,
        help_text="Counts of the held-out/reference data per feature bin, label and confidence (inference.profile).",
    )
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.STAGED)
    activated_at = models.DateTimeField(null=True, blank=True, help_text="Last time this version became active.")
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="model_version_unique"),
            # The database, not only the code, keeps a name from having two active versions.
            models.UniqueConstraint(fields=["name"], condition=Q(status="active"), name="model_one_active_per_name"),
            models.CheckConstraint(condition=Q(version__gte=1), name="model_version_positive"),
            models.CheckConstraint(condition=Q(value_min__lt=models.F("value_max")), name="model_value_range_valid"),
            models.CheckConstraint(
                condition=Q(plausible_min__isnull=True)
                | Q(plausible_max__isnull=True)
                | Q(plausible_min__lt=models.F("plausible_max")),
                name="model_plausible_range_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}@{self.version} ({self.status})"

    @property
    def ref(self) -> str:
        """``name@version``, the form used in logs, audit targets and errors."""
        return f"{self.name}@{self.version}"

    @property
    def accuracy(self) -> float | None:
        """Held-out accuracy recorded at training time (``None`` for registered files)."""
        value = (self.metrics or {}).get("accuracy")
        return float(value) if value is not None else None

    @property
    def servable(self) -> bool:
        """Active now, or activated before and not retired (clients may pin such versions)."""
        return self.status != self.Status.RETIRED and self.activated_at is not None

    def absolute_path(self) -> Path:
        """Where the file lives under this deployment's model store."""
        return Path(settings.MODEL_STORE_DIR) / self.file_path


class TrainingRun(models.Model):
    """A training job started from Django admin and executed by a Celery worker (never a web process)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    model_name = models.CharField(max_length=100, default="digits", validators=[model_name_validator])
    epochs = models.PositiveIntegerField(default=30)
    batch_size = models.PositiveIntegerField(default=32)
    seed = models.IntegerField(default=42)
    activate = models.BooleanField(default=False, help_text="Activate the new version when training succeeds.")
    region = models.CharField(max_length=16, default="eu")
    risk_tier = models.CharField(max_length=16, choices=RiskTier.choices, default=RiskTier.LIMITED)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0, help_text="Fraction of epochs done, 0 to 1.")
    message = models.CharField(max_length=300, blank=True, default="")
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="training_runs"
    )
    error = models.TextField(blank=True, default="")
    requested_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(epochs__gte=1), name="training_run_epochs_positive"),
            models.CheckConstraint(condition=Q(batch_size__gte=1), name="training_run_batch_positive"),
        ]

    def __str__(self) -> str:
        return f"training run #{self.pk} {self.model_name} ({self.status})"


class ModelRollout(models.Model):
    """A traffic split of one model: the active (stable) version, at most one canary, any number of shadows.

    The stable version is not stored as a pointer: it is always the name's
    active version, so an activation during a rollout changes what "stable"
    means everywhere at once.  ``stable_version`` records which version was
    stable when the rollout started (for the record and the admin).  The
    canary receives ``canary_percent`` of the eligible callers, chosen by a
    hash of the API key prefix and this row's id (sticky per key, and a new
    rollout reshuffles).  Shadows run on the same batch after the answer and
    are never returned.  The database keeps one active rollout per name.
    """

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        PROMOTED = "promoted", "Promoted"
        ROLLED_BACK = "rolled_back", "Rolled back"

    name = models.CharField(max_length=100, validators=[model_name_validator])
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    stable_version = models.PositiveIntegerField(help_text="The active version when the rollout started.")
    canary_version = models.PositiveIntegerField(null=True, blank=True)
    canary_percent = models.FloatField(default=0.0, help_text="Share of eligible callers served the canary, 0-100.")
    shadow_versions = models.JSONField(default=list, blank=True, help_text="Versions run after the answer, unseen.")
    # Automatic rollback thresholds (None: not checked).  Judged only once the canary
    # or a shadow has ``min_requests`` audited requests in this rollout.
    max_error_rate = models.FloatField(null=True, blank=True, help_text="Fraction of 5xx answers, 0-1.")
    max_latency_ms = models.FloatField(null=True, blank=True, help_text="Mean latency, milliseconds.")
    max_review_rate = models.FloatField(null=True, blank=True, help_text="Fraction of answers flagged for review.")
    min_agreement = models.FloatField(null=True, blank=True, help_text="Least agreement with stable, 0-1.")
    min_requests = models.PositiveIntegerField(default=50)
    reason = models.CharField(max_length=500, blank=True, default="")
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    ended_by = models.CharField(max_length=200, blank=True, default="")
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["name", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["name"], condition=Q(state="active"), name="rollout_one_active_per_name"),
            models.CheckConstraint(
                condition=Q(canary_percent__gte=0) & Q(canary_percent__lte=100), name="rollout_percent_range"
            ),
            models.CheckConstraint(
                condition=Q(canary_version__isnull=True) | Q(canary_percent__gt=0), name="rollout_canary_has_percent"
            ),
        ]

    def __str__(self) -> str:
        return f"rollout #{self.pk} {self.name} ({self.state})"

    @property
    def versions(self) -> list[int]:
        """Every version this rollout names: stable, canary, shadows."""
        out = [self.stable_version]
        if self.canary_version is not None:
            out.append(self.canary_version)
        out += [v for v in self.shadow_versions if v not in out]
        return out

    def as_record(self) -> dict[str, object]:
        """The rollout as audit before/after values and ``rollout_status --json``."""
        return {
            "id": self.pk,
            "name": self.name,
            "state": self.state,
            "stable_version": self.stable_version,
            "canary_version": self.canary_version,
            "canary_percent": self.canary_percent,
            "shadow_versions": list(self.shadow_versions),
        }
