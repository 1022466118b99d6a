"""Quota enforcement: one atomic check-and-consume per request, across every process.

``quota_reserve`` charges a request against every limit that applies to it --
the tenant's token bucket and daily/monthly instance quotas, plus the key's own
when the key overrides them -- and either admits it against all of them or
refuses it without consuming anything.  Two backends share these semantics:

* Redis (``REDIS_URL`` set): one ``EVALSHA`` round trip per request; the Lua
  script (``quota_reserve.lua``) runs atomically inside Redis, so any number of
  gateway processes and hosts share exact counters.  Lost counters (a Redis
  restart or flush) are rebuilt from the durable usage record, the ``units``
  of the audit events, before anything is admitted against them.
* The database (embedded default): conditional ``UPDATE ... RETURNING`` rows
  in one transaction (``tenants.quota.db``).

Known weaknesses of popular gateways this avoids: limits that multiply with
the number of replicas (counters are shared, never per process), budgets
overspent under concurrency (check and consume are one atomic step, never a
read followed by a write), and fresh quotas after a cache loss (rebuild).

A request that fails later in the pipeline calls ``quota_refund``; the rate
token stays spent (the request did reach the gateway), the instances return.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from core.errors import DomainError, RateLimited
from core.redis import redis_enabled
from tenants.errors import QuotaBackendUnavailable, QuotaExceeded
from tenants.principal import Principal
from tenants.quota import db as quota_db
from tenants.quota import redis as quota_redis
from tenants.quota.types import (
    Charge,
    QuotaPolicy,
    QuotaRefusal,
    quota_checks,
)
from tenants.quota_windows import DAILY, MONTHLY, RATE

logger = logging.getLogger("tenants.quota")

_PERIOD_LABELS = {RATE: "Rate limit", DAILY: "Daily quota", MONTHLY: "Monthly quota"}


@dataclass
class Reservation:
    """Instances admitted for one request; refund with ``quota_refund`` if the request fails.

    ``fail_open`` is true when the quota backend was down and ``QUOTA_FAIL_OPEN``
    admitted the request unchecked: the pipeline flags its audit record.
    """

    units: int
    fail_open: bool = False
    backend: str = "none"
    policies: tuple[QuotaPolicy, ...] = ()
    charges: tuple[Charge, ...] = ()
    refunded: int = 0

    @property
    def charged_units(self) -> int:
        """Instances still charged (reserved minus refunded): what the audit record's ``units`` says.

        Fail-open admissions count too: they were served, and counting them
        lets a counter rebuilt after the outage include them.
        """
        return self.units - self.refunded

    def headers(self) -> dict[str, str]:
        """IETF RateLimit header fields for the limit closest to exhaustion, plus the full policy list.

        ``RateLimit-Reset`` is in seconds.  With no limit at all (or a fail-open
        admission, when nothing is known) no header is sent rather than a guess.
        """
        if not self.policies:
            return {}
        tightest = min(self.policies, key=lambda p: (p.remaining / p.limit if p.limit else 0.0, p.reset_seconds))
        return {
            "RateLimit-Limit": str(tightest.limit),
            "RateLimit-Remaining": str(max(0, tightest.remaining)),
            "RateLimit-Reset": str(tightest.reset_seconds),
            "RateLimit-Policy": ", ".join(
                f'{p.limit};w={p.window_seconds};comment="{p.scope} {p.name}"' for p in self.policies
            ),
        }


def quota_now() -> datetime:
    """The wall clock that quota windows and the database token bucket read.

    A module-level function so tests can drive rate limits with an injected
    clock instead of racing the machine's speed; the Redis backend's token
    bucket reads Redis' own ``TIME`` and ignores it.
    """
    return datetime.now(UTC)


def quota_reserve(*, principal: Principal, units: int) -> Reservation:
    """Admit ``units`` instances (and one request) against every applicable limit, or refuse.

    Raises ``RateLimited`` (token bucket empty) or ``QuotaExceeded`` (daily or
    monthly quota), each with ``Retry-After`` and a ``limit`` member naming the
    limit; ``QuotaBackendUnavailable`` (503) when the backend cannot answer and
    ``QUOTA_FAIL_OPEN`` is off.  A refused request consumes nothing.
    """
    if isinstance(units, bool) or not isinstance(units, int) or units < 0:
        raise ValueError(f"units must be a non-negative int, got {units!r}")
    now = quota_now()
    checks = quota_checks(principal.effective_quota_scopes(), now)
    if not checks:
        return Reservation(units=units)
    if redis_enabled():
        try:
            policies, charges = quota_redis.reserve(checks=checks, units=units, now=now)
        except QuotaRefusal as refusal:
            raise _refusal_error(refusal, units=units) from None
        except RedisError as exc:
            return _backend_down(exc, units=units)
        return Reservation(units=units, backend="redis", policies=policies, charges=charges)
    try:
        policies, charges = quota_db.reserve(checks=checks, units=units, now=now)
    except QuotaRefusal as refusal:
        raise _refusal_error(refusal, units=units) from None
    except DatabaseError as exc:
        # The embedded backend is the database the audit record goes to as
        # well: admitting "open" would only fail one step later, so it fails closed.
        logger.error("quota database unavailable", extra={"error": str(exc)})
        raise QuotaBackendUnavailable("Quota counters are unavailable; the request was not admitted.") from exc
    return Reservation(units=units, backend="db", policies=policies, charges=charges)


def quota_refund(*, reservation: Reservation, units: int | None = None) -> None:
    """Give back ``units`` (all still charged by default) of a reservation; never raises for backend trouble.

    A refund that cannot reach the backend is logged: the counter stays high
    until it is next rebuilt from the audit record, which never counted the
    refunded instances (the pipeline writes ``units`` net of refunds).
    """
    remaining = reservation.units - reservation.refunded
    amount = remaining if units is None else min(units, remaining)
    if amount <= 0:
        return
    if reservation.charges:
        try:
            if reservation.backend == "redis":
                quota_redis.refund(charges=reservation.charges, units=amount)
            else:
                quota_db.refund(charges=reservation.charges, units=amount)
        except (RedisError, DatabaseError) as exc:
            logger.warning("quota refund failed", extra={"error": str(exc), "units": amount})
    reservation.refunded += amount


# None until the first warning: a 0.0 sentinel would swallow it on a machine up for under 5 s.
_last_fail_open_log: float | None = None


def _backend_down(exc: Exception, *, units: int) -> Reservation:
    """Redis unreachable: fail closed (503) by default, or admit unchecked when configured to."""
    global _last_fail_open_log
    if not settings.QUOTA_FAIL_OPEN:
        logger.error("quota backend unavailable; failing closed", extra={"error": str(exc)})
        raise QuotaBackendUnavailable(
            "The quota service is unreachable; the request was not admitted. Retry shortly."
        ) from exc
    now = time.monotonic()
    # One warning a few seconds is enough to page someone; one per request would flood the logs.
    if _last_fail_open_log is None or now - _last_fail_open_log > 5.0:
        _last_fail_open_log = now
        logger.warning("quota backend unavailable; failing open", extra={"error": str(exc)})
    return Reservation(units=units, fail_open=True, backend="fail-open")


def _refusal_error(refusal: QuotaRefusal, *, units: int) -> DomainError:
    """The 429 for a refusal: ``RateLimited`` or ``QuotaExceeded``, with Retry-After and RateLimit headers."""
    check = refusal.check
    whose = "this key" if check.scope_kind == "key" else "this tenant"
    retry = str(refusal.retry_after)
    used = int(refusal.current)
    # A refused bucket has no whole token left; a refused counter may still have room for a smaller batch.
    remaining = 0 if check.kind == RATE else max(0, check.limit - used)
    headers = {
        "Retry-After": retry,
        "RateLimit-Limit": str(check.limit),
        "RateLimit-Remaining": str(remaining),
        "RateLimit-Reset": retry,
    }
    if check.kind == RATE:
        return RateLimited(
            f"{_PERIOD_LABELS[RATE]} of {check.rate:g} requests/s (burst {check.limit}) for {whose} exceeded; "
            f"retry in {retry} s.",
            headers=headers,
            limit=RATE,
            scope=check.scope_kind,
            retry_after=refusal.retry_after,
        )
    assert check.window is not None
    resets_at = check.window.end.strftime("%Y-%m-%dT%H:%M:%SZ")
    return QuotaExceeded(
        f"{_PERIOD_LABELS[check.kind]} of {check.limit} instances for {whose} cannot admit {units} more "
        f"({used} used); it resets at {resets_at}.",
        headers=headers,
        limit=check.kind,
        scope=check.scope_kind,
        quota=check.limit,
        used=used,
        requested=units,
        resets_at=resets_at,
        period_start=check.window.start_date.isoformat(),
        retry_after=refusal.retry_after,
    )


def quota_state_of(*, reservation: Reservation) -> dict:
    """A JSON-safe record of a reservation, so another process can refund it later (batch jobs)."""
    return {
        "backend": reservation.backend,
        "units": reservation.units,
        "refunded": reservation.refunded,
        "fail_open": reservation.fail_open,
        "charges": [
            {
                "counter_id": charge.counter_id,
                "tenant_id": charge.tenant_id,
                "period": charge.period,
                "period_start": charge.period_start.isoformat(),
                "redis_key": charge.redis_key,
            }
            for charge in reservation.charges
        ],
    }


def quota_refund_state(*, state: dict, units: int) -> None:
    """Refund ``units`` of a reservation recorded with ``quota_state_of`` (never more than it reserved).

    The caller tracks what it already refunded; like ``quota_refund`` this never
    raises for backend trouble.
    """
    if not state or units <= 0:
        return
    reservation = Reservation(
        units=int(state.get("units", 0)),
        fail_open=bool(state.get("fail_open", False)),
        backend=str(state.get("backend", "none")),
        charges=tuple(
            Charge(
                counter_id=str(c["counter_id"]),
                tenant_id=int(c["tenant_id"]),
                period=str(c["period"]),
                period_start=date.fromisoformat(str(c["period_start"])),
                redis_key=str(c.get("redis_key", "")),
            )
            for c in state.get("charges", ())
        ),
        refunded=int(state.get("refunded", 0)),
    )
    quota_refund(reservation=reservation, units=units)
