"""Who is calling: the authenticated principal and its effective limits.

Plain frozen dataclasses, built once per key and cached per process, so the
hot path reads attributes instead of querying the database.  Every later
pipeline step (policy, quota, audit) works from a ``Principal``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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

    @property
    def actor(self) -> str:
        """How audit records name this caller (never the secret)."""
        return f"tenant:{self.tenant_slug}/key:{self.key_prefix}"
