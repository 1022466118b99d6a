"""The quota value types, the backend protocol and the admission arithmetic both backends share.

Neither the facade (``tenants.services.quotas``) nor a backend
(``tenants.quota.redis``, ``tenants.quota.db``) imports the other's module for
these: both import them from here, so there is no import cycle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from django.conf import settings

from tenants.principal import QuotaScope
from tenants.quota_windows import DAILY, MONTHLY, RATE, Window, window_for


def quota_redis_namespace() -> str:
    """The key prefix of every quota key (``QUOTA_REDIS_PREFIX``, default ``maas:q``)."""
    return getattr(settings, "QUOTA_REDIS_PREFIX", "maas:q")


@dataclass(frozen=True)
class QuotaCheck:
    """One limit a reservation must fit: a token bucket (``rate``) or a calendar counter."""

    scope: QuotaScope
    kind: str
    limit: int
    rate: float | None = None
    window: Window | None = None

    @property
    def scope_kind(self) -> str:
        """``key`` for a key's own counters, ``tenant`` otherwise."""
        return "key" if self.scope.counter_id.startswith("k:") else "tenant"


@dataclass(frozen=True)
class QuotaPolicy:
    """The state of one limit right after admission (feeds the RateLimit headers)."""

    name: str
    scope: str
    limit: int
    remaining: int
    reset_seconds: int
    window_seconds: int


@dataclass(frozen=True)
class Charge:
    """A counter a reservation incremented, remembered so a refund finds the same window."""

    counter_id: str
    tenant_id: int
    period: str
    period_start: date
    redis_key: str


class QuotaRefusal(Exception):
    """Raised by a backend when ``check`` refused; nothing was consumed."""

    def __init__(self, check: QuotaCheck, *, retry_after: int, current: float):
        super().__init__(check.kind)
        self.check = check
        self.retry_after = max(1, retry_after)
        self.current = current


def quota_checks(scopes: tuple[QuotaScope, ...], now: datetime) -> list[QuotaCheck]:
    """Every limit that applies to a request, in a fixed order (the lock order of the DB backend)."""
    checks: list[QuotaCheck] = []
    for scope in scopes:
        burst = scope.effective_burst
        if scope.rate_per_second is not None and burst is not None:
            checks.append(QuotaCheck(scope=scope, kind=RATE, limit=burst, rate=float(scope.rate_per_second)))
        if scope.daily_instances is not None:
            checks.append(
                QuotaCheck(scope=scope, kind=DAILY, limit=int(scope.daily_instances), window=window_for(DAILY, now))
            )
        if scope.monthly_instances is not None:
            checks.append(
                QuotaCheck(
                    scope=scope, kind=MONTHLY, limit=int(scope.monthly_instances), window=window_for(MONTHLY, now)
                )
            )
    return checks


def bucket_policy(check: QuotaCheck, tokens: float) -> QuotaPolicy:
    """The header view of a token bucket holding ``tokens``."""
    rate = check.rate or 1.0
    return QuotaPolicy(
        name=RATE,
        scope=check.scope_kind,
        limit=check.limit,
        remaining=max(0, math.floor(tokens)),
        reset_seconds=max(0, math.ceil((check.limit - tokens) / rate)),
        window_seconds=max(1, math.ceil(check.limit / rate)),
    )


def counter_policy(check: QuotaCheck, used: int, now: datetime) -> QuotaPolicy:
    """The header view of a daily or monthly counter at ``used``."""
    assert check.window is not None
    return QuotaPolicy(
        name=check.kind,
        scope=check.scope_kind,
        limit=check.limit,
        remaining=max(0, check.limit - used),
        reset_seconds=check.window.seconds_left(now),
        window_seconds=check.window.seconds,
    )


def quota_admission(
    *,
    checks: Sequence[QuotaCheck],
    values: Sequence[float],
    now: datetime,
    redis_keys: Sequence[str] | None = None,
    token_scale: float = 1.0,
) -> tuple[tuple[QuotaPolicy, ...], tuple[Charge, ...]]:
    """The header policies and refundable charges of an admitted reservation (both backends).

    ``values[i]`` is what the backend left in ``checks[i]`` after admission:
    the bucket's tokens times ``token_scale`` for a rate check (Redis keeps
    thousandths of a token, so it passes 1000), the counter's ``used`` for a
    daily or monthly one.  ``redis_keys[i]`` is the Redis key of ``checks[i]``,
    remembered in the charge so a refund hits the same key; the database
    backend passes none and its charges carry ``""``.  Only daily/monthly
    counters are charged: a spent rate token is never refunded.
    """
    keys = [""] * len(checks) if redis_keys is None else redis_keys
    policies: list[QuotaPolicy] = []
    charges: list[Charge] = []
    for check, key, value in zip(checks, keys, values, strict=True):
        if check.kind == RATE:
            policies.append(bucket_policy(check, value / token_scale))
            continue
        assert check.window is not None
        policies.append(counter_policy(check, int(value), now))
        charges.append(
            Charge(
                counter_id=check.scope.counter_id,
                tenant_id=check.scope.tenant_id,
                period=check.kind,
                period_start=check.window.start_date,
                redis_key=key,
            )
        )
    return tuple(policies), tuple(charges)


class QuotaBackend(Protocol):
    """What the facade needs from a counter store (``tenants.quota.redis`` and ``tenants.quota.db`` are modules
    that satisfy it).

    ``reserve`` admits ``units`` against every check atomically or raises
    :class:`QuotaRefusal` having consumed nothing; ``refund`` returns
    instances to the counters named by an earlier reservation's charges.
    """

    def reserve(
        self, *, checks: list[QuotaCheck], units: int, now: datetime
    ) -> tuple[tuple[QuotaPolicy, ...], tuple[Charge, ...]]: ...

    def refund(self, *, charges: tuple[Charge, ...], units: int) -> None: ...
