"""Failed authentication per client address: the throttle and the flood record.

Every request that fails authentication (401: no key, a malformed, unknown,
revoked or expired one) is counted per client address in fixed windows of
``AUTH_FAILURE_WINDOW_SECONDS``.  Two consequences:

* **Throttle.** Past ``AUTH_FAILURE_LIMIT`` failures in a window the address
  is answered 429 ``authentication_throttled`` with ``Retry-After`` (the end
  of the window) instead of 401.  A request with a valid key is never
  counted nor slowed down, so the check costs nothing on the hot path and a
  tenant behind the same NAT as an attacker keeps working.
* **Flood record.** The first ``AUTH_FAILURE_VERBATIM`` failures of a window
  are audited one row each, as before; the rest are not written one by one
  but summed into one aggregated ``auth.flood`` audit event per address and
  window, written by :func:`auth_floods_flush` once the window has ended
  (Celery beat, every window).  A loop of 1,200 bad keys a minute leaves
  eleven rows, not 1,200, and still a complete count.

Counters live in Redis when ``REDIS_URL`` is set (INCR, one round trip) and
in the database otherwise (one conditional UPDATE, as the embedded quota
backend).  A counter that cannot be reached counts nothing (fail open): the
request is then simply audited verbatim, never answered 5xx for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F

from tenants.models import AuthFailureWindow

logger = logging.getLogger("tenants.auth_failures")

#: The clock (epoch seconds); tests replace it instead of waiting.
clock: Callable[[], float] = time.time

_WINDOWS_SET = "af:windows"


@dataclass(frozen=True)
class FailureCount:
    """This failure's place in its address's current window."""

    ordinal: int
    retry_after: int

    @property
    def throttled(self) -> bool:
        """Past the per-window limit: answer 429 instead of 401."""
        return self.ordinal > settings.AUTH_FAILURE_LIMIT

    @property
    def verbatim(self) -> bool:
        """Among the first of its window: audited as a row of its own."""
        return self.ordinal <= settings.AUTH_FAILURE_VERBATIM


def _window(now: float) -> tuple[int, int]:
    size = settings.AUTH_FAILURE_WINDOW_SECONDS
    start = int(now) - int(now) % size
    return start, max(1, start + size - int(now))


def _redis_key(window_start: int, client_ip: str) -> str:
    return f"{settings.QUOTA_REDIS_PREFIX}:af:{window_start}:{client_ip}"


def auth_failure_count(*, client_ip: str | None) -> FailureCount:
    """Count one failed authentication from ``client_ip``; returns its ordinal in the current window."""
    start, retry_after = _window(clock())
    address = (client_ip or "unknown")[:64]
    try:
        ordinal = _count_redis(address, start) if settings.REDIS_URL else _count_db(address, start)
    except Exception:  # a counter outage must not turn a 401 into a 5xx
        logger.warning("auth failure counter unavailable; counting nothing", exc_info=True)
        ordinal = 0
    return FailureCount(ordinal=ordinal, retry_after=retry_after)


def _count_redis(address: str, start: int) -> int:
    from core.redis import redis_client

    client = redis_client()
    key = _redis_key(start, address)
    pipe = client.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, settings.AUTH_FAILURE_WINDOW_SECONDS * 10)
    ordinal = int(pipe.execute()[0])
    if ordinal == settings.AUTH_FAILURE_VERBATIM + 1:
        # Only windows that overflowed need an aggregated event.
        client.sadd(f"{settings.QUOTA_REDIS_PREFIX}:{_WINDOWS_SET}", f"{start}|{address}")
    return ordinal


def _count_db(address: str, start: int) -> int:
    for _ in range(2):
        with transaction.atomic():
            rows = AuthFailureWindow.objects.filter(client_ip=address, window_start=start)
            if rows.update(failures=F("failures") + 1):
                return rows.values_list("failures", flat=True).get()
            try:
                with transaction.atomic():
                    AuthFailureWindow.objects.create(client_ip=address, window_start=start, failures=1)
                return 1
            except IntegrityError:
                continue  # a concurrent first failure created the row: count on it
    raise DatabaseError("auth failure window could not be counted")


def auth_floods_flush(*, now: float | None = None) -> int:
    """Write one aggregated audit event per address and ended window that overflowed; returns how many.

    Each window is claimed (deleted) before its event is written, so two
    concurrent runs never record a window twice.
    """
    from audit.services import audit_event_record

    current, _ = _window(clock() if now is None else now)
    floods = _claim_redis(current) if settings.REDIS_URL else _claim_db(current)
    for address, start, failures in floods:
        verbatim = min(failures, settings.AUTH_FAILURE_VERBATIM)
        audit_event_record(
            event_type="request",
            action="auth.flood",
            client_ip=address if address != "unknown" else None,
            error_code="auth_flood",
            detail={
                "client_ip": address,
                "window_start": start,
                "window_seconds": settings.AUTH_FAILURE_WINDOW_SECONDS,
                "failures": failures,
                "recorded_verbatim": verbatim,
                "aggregated": failures - verbatim,
            },
        )
    return len(floods)


def _claim_redis(current: int) -> list[tuple[str, int, int]]:
    from core.redis import redis_client

    client = redis_client()
    members = f"{settings.QUOTA_REDIS_PREFIX}:{_WINDOWS_SET}"
    floods = []
    for raw in client.smembers(members):
        member = raw.decode() if isinstance(raw, bytes) else raw
        start_text, _, address = member.partition("|")
        start = int(start_text)
        if start >= current or not client.srem(members, member):
            continue
        key = _redis_key(start, address)
        failures = int(client.get(key) or 0)
        client.delete(key)
        floods.append((address, start, failures))
    return floods


def _claim_db(current: int) -> list[tuple[str, int, int]]:
    floods = []
    ended = AuthFailureWindow.objects.filter(window_start__lt=current)
    for row in list(ended):
        # The DELETE is the claim: only the run that removed the row records it.
        if AuthFailureWindow.objects.filter(pk=row.pk).delete()[0] and row.failures > settings.AUTH_FAILURE_VERBATIM:
            floods.append((row.client_ip, row.window_start, row.failures))
    return floods
