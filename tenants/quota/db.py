"""The database quota backend: conditional updates in one transaction.

Each daily/monthly counter is admitted with::

    UPDATE quota_counter SET used = used + n
     WHERE scope = .. AND period = .. AND period_start = .. AND used + n <= limit
    RETURNING used

and the token bucket with the same shape (refill and take one token only
where at least one token is available).  The row lock taken by ``UPDATE``
makes check and consume one step: PostgreSQL re-evaluates the ``WHERE`` on the
latest row version after waiting for a concurrent writer (READ COMMITTED), and
SQLite runs the whole transaction under its single writer lock (the project
opens transactions ``IMMEDIATE``).  All checks of one request run in one
transaction; a refusal raises inside it, so everything rolls back and a
refused request consumes nothing.  Checks run in a fixed order (scope, kind),
so two transactions never wait on each other's rows in opposite orders.

Why a token bucket row rather than a fixed one-second window counter: it has
the same semantics as the Redis backend (rate plus burst), and a fixed window
admits twice the limit across a window boundary.  It costs one conditional
``UPDATE`` on one row per scope, like a window counter would; the clock is the
gateway host's (epoch seconds), and a clock that steps back never refills.

A missing counter row (a new day or month, or a scope's first request) is
created from the durable usage record (the audit events' ``units``) with
``get_or_create``, which tolerates a concurrent creator.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest

from tenants.models import QuotaCounter, RateBucket
from tenants.quota.types import Charge, QuotaCheck, QuotaPolicy, QuotaRefusal, quota_admission
from tenants.quota_windows import DAILY, RATE

_PERIOD = {DAILY: QuotaCounter.Period.DAY, "monthly": QuotaCounter.Period.MONTH}
# Old counter rows are pruned when a scope starts a new window: no periodic job needed.
_KEEP = {QuotaCounter.Period.DAY: timedelta(days=40), QuotaCounter.Period.MONTH: timedelta(days=400)}


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _counter_sql() -> str:
    table = _q(QuotaCounter._meta.db_table)
    used, scope, period, start = _q("used"), _q("scope"), _q("period"), _q("period_start")
    return (
        f"UPDATE {table} SET {used} = {used} + %s "
        f"WHERE {scope} = %s AND {period} = %s AND {start} = %s AND {used} + %s <= %s RETURNING {used}"
    )


def _bucket_sql() -> str:
    table = _q(RateBucket._meta.db_table)
    tokens, stamp, scope = _q("tokens"), _q("stamp"), _q("scope")
    least, greatest = ("MIN", "MAX") if connection.vendor == "sqlite" else ("LEAST", "GREATEST")
    refill = f"{least}(%s, {tokens} + {greatest}(%s - {stamp}, 0.0) * %s)"
    return (
        f"UPDATE {table} SET {tokens} = {refill} - 1.0, {stamp} = {greatest}({stamp}, %s) "
        f"WHERE {scope} = %s AND {refill} >= 1.0 RETURNING {tokens}"
    )


def reserve(
    *, checks: list[QuotaCheck], units: int, now: datetime
) -> tuple[tuple[QuotaPolicy, ...], tuple[Charge, ...]]:
    """Admit against every check in one transaction or raise ``QuotaRefusal`` (rolled back)."""
    epoch = now.timestamp()
    values: dict[int, float] = {}
    ordered = sorted(range(len(checks)), key=lambda i: (checks[i].scope.counter_id, checks[i].kind))
    with transaction.atomic():
        for index in ordered:
            check = checks[index]
            if check.kind == RATE:
                values[index] = _take_token(check, epoch)
            else:
                values[index] = _consume(check, units, now)
    return quota_admission(checks=checks, values=[values[index] for index in range(len(checks))], now=now)


def refund(*, charges: tuple[Charge, ...], units: int) -> None:
    """Return ``units`` to each charged counter (never below zero)."""
    with transaction.atomic():
        for charge in sorted(charges, key=lambda c: (c.counter_id, c.period)):
            QuotaCounter.objects.filter(
                scope=charge.counter_id, period=_PERIOD[charge.period], period_start=charge.period_start
            ).update(used=Greatest(F("used") - units, Value(0)))


def _consume(check: QuotaCheck, units: int, now: datetime) -> int:
    assert check.window is not None
    period = _PERIOD[check.kind]
    start = check.window.start_date
    params = [
        units,
        check.scope.counter_id,
        period.value,
        connection.ops.adapt_datefield_value(start),
        units,
        check.limit,
    ]
    sql = _counter_sql()
    for attempt in range(2):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is not None:
            return int(row[0])
        current = (
            QuotaCounter.objects.filter(scope=check.scope.counter_id, period=period, period_start=start)
            .values_list("used", flat=True)
            .first()
        )
        if current is not None or attempt:
            break
        _counter_create(check, period, start)
    raise QuotaRefusal(check, retry_after=check.window.seconds_left(now), current=int(current or 0))


def _counter_create(check: QuotaCheck, period: str, start) -> None:
    from tenants.selectors import usage_units_since

    assert check.window is not None
    seed = usage_units_since(
        tenant_id=check.scope.tenant_id, since=check.window.start, key_prefixes=check.scope.audit_key_prefixes
    )
    _, created = QuotaCounter.objects.get_or_create(
        scope=check.scope.counter_id, period=period, period_start=start, defaults={"used": seed}
    )
    if created:
        QuotaCounter.objects.filter(
            scope=check.scope.counter_id, period=period, period_start__lt=start - _KEEP[period]
        ).delete()


def _take_token(check: QuotaCheck, epoch: float) -> float:
    rate = float(check.rate or 0.0)
    burst = float(check.limit)
    scope = check.scope.counter_id
    params = [burst, epoch, rate, epoch, scope, burst, epoch, rate]
    sql = _bucket_sql()
    for attempt in range(2):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is not None:
            return float(row[0])
        state = RateBucket.objects.filter(scope=scope).values_list("tokens", "stamp").first()
        if state is not None or attempt:
            break
        RateBucket.objects.get_or_create(scope=scope, defaults={"tokens": burst, "stamp": epoch})
    tokens, stamp = state if state is not None else (0.0, epoch)
    available = min(burst, tokens + max(0.0, epoch - stamp) * rate)
    wait = (1.0 - available) / rate if rate > 0 else 1.0
    raise QuotaRefusal(check, retry_after=-int(-wait // 1), current=available)
