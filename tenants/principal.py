"""Who is calling: the authenticated principal and its effective limits.

Plain frozen dataclasses, built once per key and cached per process, so the
hot path reads attributes instead of querying the database.  Every later
pipeline step (policy, quota, audit) works from a ``Principal``.

Django-free on purpose: the quota code, the policy evaluator and the tests
construct these values without touching the ORM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCOPE_PREDICT = "predict"
SCOPE_JOBS = "jobs"
SCOPE_USAGE_READ = "usage:read"
SCOPE_KEYS_READ = "keys:read"
#: Register, list and remove the tenant's own quota webhooks (``/v1/webhooks``).
SCOPE_WEBHOOKS = "webhooks"
#: Every scope a key may carry; a key created without explicit scopes gets all of them.
ALL_SCOPES: tuple[str, ...] = (SCOPE_PREDICT, SCOPE_JOBS, SCOPE_USAGE_READ, SCOPE_KEYS_READ, SCOPE_WEBHOOKS)

#: The limit fields, in the order plans, tenant overrides and key overrides list them.
LIMIT_FIELDS: tuple[str, ...] = (
    "rate_per_second",
    "burst",
    "daily_instances",
    "monthly_instances",
    "max_batch",
    "max_body_bytes",
    "max_concurrent_jobs",
    "max_job_instances",
)
#: The subset of limits enforced by the quota counters (the others are checked by the pipeline).
QUOTA_FIELDS: tuple[str, ...] = ("rate_per_second", "burst", "daily_instances", "monthly_instances")


@dataclass(frozen=True)
class Limits:
    """Effective limits after plan, then tenant override, then key override (``None`` = unlimited)."""

    rate_per_second: float | None = None
    burst: int | None = None
    daily_instances: int | None = None
    monthly_instances: int | None = None
    max_batch: int = 1024
    max_body_bytes: int = 8 * 1024 * 1024
    max_concurrent_jobs: int = 2
    max_job_instances: int = 100_000


@dataclass(frozen=True)
class QuotaScope:
    """One set of counters that a reservation must fit into.

    Every request is charged to its tenant's scope (``t:<tenant id>``).  A key
    that carries its own rate/daily/monthly override is *also* charged to a key
    scope (``k:<lineage id>``): the key is bounded by its own numbers and the
    tenant by the tenant's, so per-key budgets never let a tenant overspend.
    The key scope is named after the first key of a rotation chain, so that
    rotating a key does not hand it a fresh budget.

    ``audit_key_prefixes`` says which audit records rebuild a lost counter:
    empty means all of the tenant's records.
    """

    counter_id: str
    tenant_id: int
    rate_per_second: float | None = None
    burst: int | None = None
    daily_instances: int | None = None
    monthly_instances: int | None = None
    audit_key_prefixes: tuple[str, ...] = ()

    @property
    def effective_burst(self) -> int | None:
        """The bucket size: the configured burst, or one second's worth of requests (at least 1)."""
        if self.rate_per_second is None:
            return None
        if self.burst is not None:
            return max(1, self.burst)
        return max(1, int(-(-self.rate_per_second // 1)))

    @property
    def is_limited(self) -> bool:
        """True when at least one limit applies to this scope."""
        limits = (self.rate_per_second, self.daily_instances, self.monthly_instances)
        return any(value is not None for value in limits)


@dataclass(frozen=True)
class Principal:
    """An authenticated API key of an active tenant."""

    tenant_id: int
    tenant_slug: str
    region: str
    identity_verified: bool
    approved_purposes: tuple[str, ...]
    key_id: int
    key_prefix: str
    scopes: frozenset[str]
    allowed_models: frozenset[str] = field(default_factory=frozenset)
    limits: Limits = field(default_factory=Limits)
    #: The counters ``quota_reserve`` charges; empty means "the tenant, with ``limits``".
    quota_scopes: tuple[QuotaScope, ...] = ()

    @property
    def actor(self) -> str:
        """How audit records name this caller (never the secret)."""
        return f"tenant:{self.tenant_slug}/key:{self.key_prefix}"

    def has_scope(self, scope: str) -> bool:
        """True when the key was granted ``scope``."""
        return scope in self.scopes

    def permits_model(self, model_name: str) -> bool:
        """The key's own model allow-list (empty: every model); listing, predicting and jobs share it."""
        return not self.allowed_models or model_name in self.allowed_models

    def effective_quota_scopes(self) -> tuple[QuotaScope, ...]:
        """The scopes to charge: the explicit ones, or a tenant scope derived from ``limits``."""
        if self.quota_scopes:
            return self.quota_scopes
        return (
            QuotaScope(
                counter_id=f"t:{self.tenant_id}",
                tenant_id=self.tenant_id,
                rate_per_second=self.limits.rate_per_second,
                burst=self.limits.burst,
                daily_instances=self.limits.daily_instances,
                monthly_instances=self.limits.monthly_instances,
            ),
        )


def limits_merge(*layers: dict[str, object | None]) -> Limits:
    """Merge limit layers, later layers winning where they set a value (``None`` = inherit).

    The first layer is the plan: a ``None`` there means "unlimited" for the
    rate and the daily/monthly quotas, and "the default" for the others.
    """
    merged: dict[str, object] = {}
    for name in LIMIT_FIELDS:
        value: object | None = None
        for layer in layers:
            candidate = layer.get(name)
            if candidate is not None:
                value = candidate
        if value is not None:
            merged[name] = value
    return Limits(**merged)  # type: ignore[arg-type]
