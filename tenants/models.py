"""Tenants, plans, API keys and the database quota counters.

Limits live on three levels: a reusable :class:`Plan`, then nullable
overrides on the :class:`Tenant`, then nullable overrides on the
:class:`ApiKey` (``None`` on an override means "inherit").  On the plan,
``None`` for the rate and the daily/monthly quotas means "unlimited".

Every change to these rows must go through ``tenants.services`` so that the
key cache of every gateway process is invalidated (``generation_bump``) and
the change is audited; the models themselves only guard invariants that must
hold whoever writes (an immutable tenant slug).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from tenants.principal import LIMIT_FIELDS, QUOTA_FIELDS

region_validator = RegexValidator(r"^[a-z]{2,16}$", "A region is a lowercase code such as cn, eu or us.")


class Plan(models.Model):
    """A reusable bundle of limits (``None`` = unlimited for rate, daily and monthly)."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=300, blank=True, default="")
    rate_per_second = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.001)],
        help_text="Requests per second (token bucket refill rate); empty = unlimited.",
    )
    burst = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Token bucket size: requests allowed at once; empty = one second's worth.",
    )
    daily_instances = models.BigIntegerField(
        null=True, blank=True, validators=[MinValueValidator(0)], help_text="Instances per UTC day; empty = unlimited."
    )
    monthly_instances = models.BigIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Instances per UTC month; empty = unlimited.",
    )
    max_batch = models.PositiveIntegerField(default=1024, validators=[MinValueValidator(1)])
    max_body_bytes = models.PositiveIntegerField(default=8 * 1024 * 1024, validators=[MinValueValidator(1)])
    max_concurrent_jobs = models.PositiveIntegerField(default=2)
    max_job_instances = models.PositiveIntegerField(default=100_000, validators=[MinValueValidator(1)])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def limit_values(self) -> dict[str, object | None]:
        """The plan's limits by field name."""
        return {name: getattr(self, name) for name in LIMIT_FIELDS}


class LimitOverrides(models.Model):
    """Nullable per-tenant or per-key overrides of the plan's limits (``None`` = inherit)."""

    rate_per_second = models.FloatField(
        "rate per second (override)", null=True, blank=True, validators=[MinValueValidator(0.001)]
    )
    burst = models.PositiveIntegerField("burst (override)", null=True, blank=True, validators=[MinValueValidator(1)])
    daily_instances = models.BigIntegerField(
        "daily instances (override)", null=True, blank=True, validators=[MinValueValidator(0)]
    )
    monthly_instances = models.BigIntegerField(
        "monthly instances (override)", null=True, blank=True, validators=[MinValueValidator(0)]
    )
    max_batch = models.PositiveIntegerField(
        "max batch (override)", null=True, blank=True, validators=[MinValueValidator(1)]
    )
    max_body_bytes = models.PositiveIntegerField(
        "max body bytes (override)", null=True, blank=True, validators=[MinValueValidator(1)]
    )
    max_concurrent_jobs = models.PositiveIntegerField("max concurrent jobs (override)", null=True, blank=True)
    max_job_instances = models.PositiveIntegerField(
        "max job instances (override)", null=True, blank=True, validators=[MinValueValidator(1)]
    )

    class Meta:
        abstract = True

    def override_values(self) -> dict[str, object | None]:
        """The overrides by field name (``None`` = inherit)."""
        return {name: getattr(self, name) for name in LIMIT_FIELDS}

    def has_quota_override(self) -> bool:
        """True when this row overrides the rate or a daily/monthly quota (it then gets its own counters)."""
        return any(getattr(self, name) is not None for name in QUOTA_FIELDS)


class Tenant(LimitOverrides):
    """A customer organisation; every key, job, policy and usage record belongs to one."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    slug = models.SlugField(max_length=64, unique=True, help_text="Immutable: audit records refer to it.")
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    suspended_reason = models.CharField(max_length=500, blank=True, default="")
    region = models.CharField(
        max_length=16,
        default="eu",
        validators=[region_validator],
        help_text="Data-residency region (cn, eu, us, ...): requests may only reach models allowed for it.",
    )
    identity_verified = models.BooleanField(default=False)
    verified_by = models.CharField(max_length=200, blank=True, default="")
    verified_at = models.DateTimeField(null=True, blank=True)
    approved_purposes = models.JSONField(default=list, blank=True, help_text='A JSON list such as ["research"].')
    contact = models.CharField(max_length=300, blank=True, default="")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="tenants")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def save(self, *args, **kwargs) -> None:
        """Refuse a slug change whoever saves: audit records and policies refer to the slug."""
        if self.pk is not None:
            stored = Tenant.objects.filter(pk=self.pk).values_list("slug", flat=True).first()
            if stored is not None and stored != self.slug:
                raise ValidationError({"slug": "A tenant's slug cannot change."})
        super().save(*args, **kwargs)

    @property
    def is_active(self) -> bool:
        """True unless suspended."""
        return self.status == self.Status.ACTIVE


class ApiKey(LimitOverrides):
    """An API key: only the public prefix and a keyed hash of the whole key are stored."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=64, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list, blank=True)
    allowed_models = models.JSONField(
        default=list, blank=True, help_text="Model names this key may call; empty = any of the tenant's."
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False, db_index=True)
    revoked_reason = models.CharField(max_length=500, blank=True, default="")
    revoked_at = models.DateTimeField(null=True, blank=True)
    rotated_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rotated_to", editable=False
    )
    grace_until = models.DateTimeField(
        null=True, blank=True, help_text="Set when the key was rotated: it is refused as expired after this."
    )
    lineage_id = models.BigIntegerField(
        null=True, blank=True, db_index=True, editable=False, help_text="Id of the first key of a rotation chain."
    )
    created_by = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return self.prefix


class QuotaCounter(models.Model):
    """Instances consumed by one scope in one day or month (the database quota backend).

    ``scope`` is ``t:<tenant id>`` or ``k:<key lineage id>``; admission is a
    conditional ``UPDATE ... SET used = used + n WHERE used + n <= limit``.
    """

    class Period(models.TextChoices):
        DAY = "day", "Day"
        MONTH = "month", "Month"

    scope = models.CharField(max_length=64)
    period = models.CharField(max_length=8, choices=Period.choices)
    period_start = models.DateField()
    used = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "period", "period_start"], name="quota_counter_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.period} {self.period_start}: {self.used}"


class RateBucket(models.Model):
    """The token bucket of one scope (the database quota backend); ``stamp`` is epoch seconds."""

    scope = models.CharField(max_length=64, unique=True)
    tokens = models.FloatField()
    stamp = models.FloatField()

    def __str__(self) -> str:
        return f"{self.scope}: {self.tokens:.2f} tokens"


class AuthFailureWindow(models.Model):
    """Failed authentications from one client address in one fixed window (the database backend).

    Kept only until the window's flood, if any, has been written to the audit
    trail as one aggregated event (``auth_floods_flush``).
    """

    client_ip = models.CharField(max_length=64)
    window_start = models.BigIntegerField(help_text="Epoch seconds at the start of the window.")
    failures = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client_ip", "window_start"], name="auth_failure_window_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.client_ip} @{self.window_start}: {self.failures}"


class UsageRollup(models.Model):
    """Counts of a tenant's audit events in one UTC hour or day, per key, model version, status and code.

    Maintained incrementally from the audit trail by ``usage_rollups_advance``
    (``tenants.services.usage_rollups``, which documents the exactness rule);
    usage reads add the events past :class:`UsageRollupWatermark`.  Rows outlive
    the events they count: the audit retention purge never touches them, so
    usage history stays whole after old events are removed.

    ``request`` separates API requests from other events that carry ``units``
    (a batch job's refund is a ``job`` event with negative units): requests,
    refusals, errors and latency count requests only, instances count both.
    ``model_version`` is -1 where the events had none; ``status_class`` is
    ``http_status // 100`` (0 where the events had no status).
    """

    class Granularity(models.TextChoices):
        HOUR = "hour", "Hour"
        DAY = "day", "Day"

    tenant_id = models.BigIntegerField()
    granularity = models.CharField(max_length=4, choices=Granularity.choices)
    bucket_start = models.DateTimeField(help_text="Start of the UTC hour or day.")
    request = models.BooleanField(help_text="True for request events, False for other events that carry units.")
    key_prefix = models.CharField(max_length=64, blank=True, default="")
    model_name = models.CharField(max_length=100, blank=True, default="")
    model_version = models.IntegerField(default=-1, help_text="-1: no model version.")
    status_class = models.PositiveSmallIntegerField(default=0, help_text="http_status // 100; 0: no status.")
    error_code = models.CharField(max_length=64, blank=True, default="")
    requests = models.BigIntegerField(default=0)
    units = models.BigIntegerField(default=0)
    latency_sum = models.FloatField(default=0.0)
    latency_count = models.BigIntegerField(default=0)
    latency_max = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            # Also the conflict target of the advance's INSERT ... ON CONFLICT, and
            # (tenant first) the index every usage read ranges over.
            models.UniqueConstraint(
                fields=[
                    "tenant_id",
                    "granularity",
                    "bucket_start",
                    "request",
                    "key_prefix",
                    "model_name",
                    "model_version",
                    "status_class",
                    "error_code",
                ],
                name="usage_rollup_unique",
            ),
        ]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"t{self.tenant_id} {self.granularity} {self.bucket_start:%Y-%m-%d %H:00} {self.key_prefix}"


class UsageRollupWatermark(models.Model):
    """Singleton: how far the audit trail is rolled up (``last_seq``) and the sequence gaps below it.

    ``gaps`` lists ``[first, last, seen_at_epoch]`` ranges of sequence numbers
    below ``last_seq`` that held no visible event when the advance passed them
    (a rolled-back INSERT, or a transaction not yet committed); each advance
    rolls up any event that has since appeared there.  ``version`` changes with
    every committed batch: a usage read that sees it change retries.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_seq = models.BigIntegerField(default=0)
    gaps = models.JSONField(default=list, blank=True)
    version = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"usage rolled up to seq {self.last_seq} ({len(self.gaps)} gaps)"
