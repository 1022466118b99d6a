"""Reads: principals for keys, usage summaries and live quota consumption.

Usage comes from the durable record, the audit events (``audit``): one
``request`` event per API request with its status, error code, latency, model
and ``units`` (the instances charged, net of refunds).  Summing that record is
also how lost quota counters are rebuilt, so the usage API, the admin chart
and the quota counters can never disagree for long.  The sums are read from
the usage rollups (``tenants.services.usage_rollups``) plus the events not yet
rolled up (``tenants.usage_rows``), so a read costs the same after a year of
traffic as after a day; the ``*_from_events`` functions are the full scans
they replace, kept as the reference the rollups are tested against.

Every selector that serves a tenant takes the tenant and filters by it first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.db import connection
from django.db.models import Avg, Count, Max, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from redis.exceptions import RedisError

from audit.models import AuditEvent
from core.redis import redis_client, redis_enabled
from tenants.models import ApiKey, QuotaCounter, Tenant
from tenants.principal import Limits, Principal, QuotaScope, limits_merge
from tenants.quota.types import quota_redis_namespace
from tenants.quota_windows import DAILY, MONTHLY, redis_counter_key, window_for
from tenants.usage_rows import UsageRow, usage_rows, usage_units

REQUEST = AuditEvent.Type.REQUEST


# --- principals ----------------------------------------------------------------
def tenant_limits(*, tenant: Tenant) -> Limits:
    """The tenant's limits: its plan with the tenant's overrides applied."""
    return limits_merge(tenant.plan.limit_values(), tenant.override_values())


def tenant_quota_scope(*, tenant: Tenant) -> QuotaScope:
    """The tenant-wide counters (``t:<id>``) with the tenant's quota limits."""
    limits = tenant_limits(tenant=tenant)
    return QuotaScope(
        counter_id=f"t:{tenant.pk}",
        tenant_id=tenant.pk,
        rate_per_second=limits.rate_per_second,
        burst=limits.burst,
        daily_instances=limits.daily_instances,
        monthly_instances=limits.monthly_instances,
    )


def key_quota_scope(*, key: ApiKey, merged: Limits) -> QuotaScope | None:
    """The key's own counters, or ``None`` when the key overrides no quota.

    The rate applies to the key when the key sets a rate or a burst; a daily or
    monthly quota only when the key sets that quota itself.
    """
    if not key.has_quota_override():
        return None
    own_rate = key.rate_per_second is not None or key.burst is not None
    lineage = key.lineage_id or key.pk
    prefixes = tuple(sorted(ApiKey.objects.filter(lineage_id=lineage).values_list("prefix", flat=True))) or (
        key.prefix,
    )
    return QuotaScope(
        counter_id=f"k:{lineage}",
        tenant_id=key.tenant_id,
        rate_per_second=merged.rate_per_second if own_rate else None,
        burst=merged.burst if own_rate else None,
        daily_instances=key.daily_instances,
        monthly_instances=key.monthly_instances,
        audit_key_prefixes=prefixes,
    )


def principal_for_key(*, key: ApiKey) -> Principal:
    """Build the cached ``Principal`` of ``key`` (with tenant and plan already loaded)."""
    tenant = key.tenant
    merged = limits_merge(tenant.plan.limit_values(), tenant.override_values(), key.override_values())
    scopes: list[QuotaScope] = [tenant_quota_scope(tenant=tenant)]
    key_scope = key_quota_scope(key=key, merged=merged)
    if key_scope is not None:
        scopes.append(key_scope)
    return Principal(
        tenant_id=tenant.pk,
        tenant_slug=tenant.slug,
        region=tenant.region,
        identity_verified=tenant.identity_verified,
        approved_purposes=tuple(str(p) for p in tenant.approved_purposes or ()),
        key_id=key.pk,
        key_prefix=key.prefix,
        scopes=frozenset(str(s) for s in key.scopes or ()),
        allowed_models=frozenset(str(m) for m in key.allowed_models or ()),
        limits=merged,
        quota_scopes=tuple(scope for scope in scopes if scope.is_limited),
    )


def api_key_lookup(*, prefix: str) -> ApiKey | None:
    """The key with ``prefix`` together with its tenant and plan (one query), or ``None``."""
    return ApiKey.objects.select_related("tenant", "tenant__plan").filter(prefix=prefix).first()


def api_keys_of_tenant(*, tenant_id: int) -> QuerySet[ApiKey]:
    """The tenant's keys, newest first."""
    return ApiKey.objects.filter(tenant_id=tenant_id).order_by("-created_at", "-id")


def api_key_status(*, key: ApiKey, now: datetime | None = None) -> str:
    """The key's state as the keys API and admin show it: ``revoked``, ``expired``, ``rotating`` or ``active``.

    ``expired`` covers both a passed expiry and a rotation whose grace period
    has ended: either way ``api_key_authenticate`` answers ``api_key_expired``.
    """
    now = now or datetime.now(UTC)
    if key.revoked:
        return "revoked"
    if (key.expires_at and key.expires_at <= now) or (key.grace_until and key.grace_until <= now):
        return "expired"
    if key.grace_until:
        return "rotating"
    return "active"


# --- usage -------------------------------------------------------------------------
def usage_units_since(*, tenant_id: int, since: datetime, key_prefixes: Iterable[str] = ()) -> int:
    """Instances charged to a tenant (or to some of its keys) since ``since``: the counters' durable truth.

    Read from the usage rollups plus the events past their watermark
    (``tenants.usage_rows``), so rebuilding a monthly counter after a Redis loss
    costs a month of daily rows, not a month of events.
    """
    return usage_units(tenant_id=tenant_id, since=since, key_prefixes=list(key_prefixes) or None)


def usage_units_since_from_events(*, tenant_id: int, since: datetime, key_prefixes: Iterable[str] = ()) -> int:
    """``usage_units_since`` summed over the audit events themselves (the reference; a full scan)."""
    events = AuditEvent.objects.filter(tenant_id=tenant_id, occurred_at__gte=since)
    prefixes = list(key_prefixes)
    if prefixes:
        events = events.filter(key_prefix__in=prefixes)
    return int(events.aggregate(total=Sum("units"))["total"] or 0)


@dataclass(frozen=True)
class DayUsage:
    """One UTC day of a tenant's traffic."""

    day: date
    requests: int = 0
    instances: int = 0
    refusals: int = 0
    errors: int = 0
    avg_latency_ms: float | None = None


@dataclass(frozen=True)
class BreakdownRow:
    """Traffic of one model version or one key over the summary's period."""

    label: str
    requests: int
    instances: int
    refusals: int
    errors: int
    avg_latency_ms: float | None
    max_latency_ms: float | None


@dataclass(frozen=True)
class UsageSummary:
    """A tenant's traffic between ``since`` (inclusive) and ``until`` (exclusive)."""

    tenant_id: int
    since: datetime
    until: datetime
    requests: int
    instances: int
    refusals: int
    errors: int
    refusals_by_code: dict[str, int]
    days: list[DayUsage]
    models: list[BreakdownRow] = field(default_factory=list)
    keys: list[BreakdownRow] = field(default_factory=list)


def _tenant_id(tenant: Tenant | int) -> int:
    return tenant if isinstance(tenant, int) else int(tenant.pk)


def usage_summary(
    *, tenant: Tenant | int, since: datetime, until: datetime, key_prefix: str | None = None
) -> UsageSummary:
    """Requests, instances (``SUM(units)``), refusals by code, errors and latency per day, model and key.

    Every day of the period appears in ``days`` (zero-filled), so a chart of it
    has no gaps.  ``key_prefix`` narrows the summary to one key.  Read from the
    usage rollups plus the events not yet in them (``tenants.usage_rows``):
    equal to :func:`usage_summary_from_events`, at a cost that depends on the
    period, not on the history.
    """
    tenant_id = _tenant_id(tenant)
    rows = usage_rows(
        tenant_id=tenant_id, since=since, until=until, key_prefixes=None if key_prefix is None else [key_prefix]
    )
    requests = [row for row in rows if row.request]
    by_code: dict[str, int] = {}
    for row in sorted((r for r in requests if r.status_class == 4), key=lambda r: r.error_code):
        label = row.error_code or "unknown"
        by_code[label] = by_code.get(label, 0) + row.requests
    per_day: dict[date, list] = {}
    for row in rows:
        acc = per_day.setdefault(row.day, [0, 0, 0, 0, 0.0, 0])
        acc[1] += row.units
        if row.request:
            acc[0] += row.requests
            acc[2] += row.requests if row.status_class == 4 else 0
            acc[3] += row.requests if row.status_class >= 5 else 0
            acc[4] += row.latency_sum
            acc[5] += row.latency_count
    days: list[DayUsage] = []
    day = since.astimezone(UTC).date()
    last = (until - timedelta(microseconds=1)).astimezone(UTC).date()
    while day <= last:
        acc = per_day.get(day)
        days.append(
            DayUsage(
                day=day,
                requests=acc[0] if acc else 0,
                instances=acc[1] if acc else 0,
                refusals=acc[2] if acc else 0,
                errors=acc[3] if acc else 0,
                avg_latency_ms=round(acc[4] / acc[5], 3) if acc and acc[5] else None,
            )
        )
        day += timedelta(days=1)
    # The scan ordered by model version with NULLs where the database puts them
    # (last on PostgreSQL, first on SQLite); the rollups answer in the same order.
    nulls_first = connection.vendor == "sqlite"
    models = [
        _breakdown_of(f"{name}@{version}" if version else name, group)
        for (name, _null, version), group in sorted(
            _group(
                requests,
                lambda r: (r.model_name, (r.model_version is None) != nulls_first, r.model_version or 0),
                skip=lambda r: r.model_name == "",
            ).items()
        )
    ]
    keys = [
        _breakdown_of(prefix, group)
        for prefix, group in sorted(_group(requests, lambda r: r.key_prefix, skip=lambda r: r.key_prefix == "").items())
    ]
    return UsageSummary(
        tenant_id=tenant_id,
        since=since,
        until=until,
        requests=sum(r.requests for r in requests),
        instances=sum(r.units for r in rows),
        refusals=sum(r.requests for r in requests if r.status_class == 4),
        errors=sum(r.requests for r in requests if r.status_class >= 5),
        refusals_by_code=by_code,
        days=days,
        models=models,
        keys=keys,
    )


def _group(rows: list[UsageRow], key, *, skip) -> dict:
    groups: dict = {}
    for row in rows:
        if not skip(row):
            groups.setdefault(key(row), []).append(row)
    return groups


def _breakdown_of(label: str, rows: list[UsageRow]) -> BreakdownRow:
    timed = sum(r.latency_count for r in rows)
    highest = [r.latency_max for r in rows if r.latency_max is not None]
    return BreakdownRow(
        label=label,
        requests=sum(r.requests for r in rows),
        instances=sum(r.units for r in rows),
        refusals=sum(r.requests for r in rows if r.status_class == 4),
        errors=sum(r.requests for r in rows if r.status_class >= 5),
        avg_latency_ms=round(sum(r.latency_sum for r in rows) / timed, 3) if timed else None,
        max_latency_ms=round(max(highest), 3) if highest else None,
    )


def _measures() -> dict:
    is_request = Q(event_type=REQUEST)
    return {
        "requests": Count("seq", filter=is_request),
        "instances": Sum("units"),
        # A refusal is the gateway saying no (4xx: auth, scope, policy, quota, input);
        # an error is the gateway failing (5xx).
        "refusals": Count("seq", filter=is_request & Q(http_status__gte=400, http_status__lt=500)),
        "errors": Count("seq", filter=is_request & Q(http_status__gte=500)),
        "avg_latency_ms": Avg("latency_ms", filter=is_request),
        "max_latency_ms": Max("latency_ms", filter=is_request),
    }


def usage_summary_from_events(
    *, tenant: Tenant | int, since: datetime, until: datetime, key_prefix: str | None = None
) -> UsageSummary:
    """``usage_summary`` computed by scanning the audit events (the reference the rollups must equal).

    Five aggregate queries over every event of the period: what every usage
    figure cost before the rollups (seconds for a tenant with millions of events).
    """
    tenant_id = _tenant_id(tenant)
    events = AuditEvent.objects.filter(tenant_id=tenant_id, occurred_at__gte=since, occurred_at__lt=until)
    if key_prefix is not None:
        events = events.filter(key_prefix=key_prefix)
    measures = _measures()
    totals = events.aggregate(**{k: v for k, v in measures.items() if "latency" not in k})
    by_code = (
        events.filter(event_type=REQUEST, http_status__gte=400, http_status__lt=500)
        .values("error_code")
        .annotate(n=Count("seq"))
        .order_by("error_code")
    )
    per_day = {
        row["day"]: row
        for row in events.annotate(day=TruncDate("occurred_at", tzinfo=UTC))
        .values("day")
        .annotate(**{k: v for k, v in measures.items() if k != "max_latency_ms"})
        .order_by("day")
    }
    days: list[DayUsage] = []
    day = since.astimezone(UTC).date()
    last = (until - timedelta(microseconds=1)).astimezone(UTC).date()
    while day <= last:
        row = per_day.get(day)
        days.append(
            DayUsage(
                day=day,
                requests=int(row["requests"]) if row else 0,
                instances=int(row["instances"] or 0) if row else 0,
                refusals=int(row["refusals"]) if row else 0,
                errors=int(row["errors"]) if row else 0,
                avg_latency_ms=round(row["avg_latency_ms"], 3) if row and row["avg_latency_ms"] is not None else None,
            )
        )
        day += timedelta(days=1)
    requests_only = events.filter(event_type=REQUEST)
    models = [
        _breakdown(f"{row['model_name']}@{row['model_version']}" if row["model_version"] else row["model_name"], row)
        for row in requests_only.exclude(model_name="")
        .values("model_name", "model_version")
        .annotate(**measures)
        .order_by("model_name", "model_version")
    ]
    keys = [
        _breakdown(row["key_prefix"], row)
        for row in requests_only.exclude(key_prefix="").values("key_prefix").annotate(**measures).order_by("key_prefix")
    ]
    return UsageSummary(
        tenant_id=tenant_id,
        since=since,
        until=until,
        requests=int(totals["requests"] or 0),
        instances=int(totals["instances"] or 0),
        refusals=int(totals["refusals"] or 0),
        errors=int(totals["errors"] or 0),
        refusals_by_code={row["error_code"] or "unknown": int(row["n"]) for row in by_code},
        days=days,
        models=models,
        keys=keys,
    )


def _breakdown(label: str, row: dict) -> BreakdownRow:
    def _ms(value: float | None) -> float | None:
        return round(value, 3) if value is not None else None

    return BreakdownRow(
        label=label,
        requests=int(row["requests"]),
        instances=int(row["instances"] or 0),
        refusals=int(row["refusals"]),
        errors=int(row["errors"]),
        avg_latency_ms=_ms(row["avg_latency_ms"]),
        max_latency_ms=_ms(row["max_latency_ms"]),
    )


# --- live quota consumption -----------------------------------------------------------
@dataclass(frozen=True)
class QuotaUsage:
    """How much of one daily or monthly quota is used right now (``limit`` ``None`` = unlimited)."""

    counter_id: str
    scope: str
    period: str
    limit: int | None
    used: int
    remaining: int | None
    resets_at: datetime

    @property
    def fraction(self) -> float | None:
        """Used share of the limit (0..1), ``None`` when unlimited."""
        if self.limit is None:
            return None
        return 1.0 if self.limit == 0 else min(1.0, self.used / self.limit)


def quota_usage_current(*, scopes: Iterable[QuotaScope], now: datetime | None = None) -> list[QuotaUsage]:
    """Current daily and monthly consumption of each scope, from the live counters.

    Reads the quota backend's counter where one exists (Redis or the counter
    table), else the durable record; a Redis that cannot answer falls back to
    the durable record too (this is a read; nothing is admitted from it).
    """
    now = now or datetime.now(UTC)
    out: list[QuotaUsage] = []
    for scope in scopes:
        kind = "key" if scope.counter_id.startswith("k:") else "tenant"
        for period, limit in ((DAILY, scope.daily_instances), (MONTHLY, scope.monthly_instances)):
            if kind == "key" and limit is None:
                continue
            window = window_for(period, now)
            used = _live_counter(scope, window) if limit is not None else None
            if used is None:
                used = usage_units_since(
                    tenant_id=scope.tenant_id, since=window.start, key_prefixes=scope.audit_key_prefixes
                )
            out.append(
                QuotaUsage(
                    counter_id=scope.counter_id,
                    scope=kind,
                    period=period,
                    limit=limit,
                    used=used,
                    remaining=None if limit is None else max(0, limit - used),
                    resets_at=window.end,
                )
            )
    return out


def _live_counter(scope: QuotaScope, window) -> int | None:
    if redis_enabled():
        key = redis_counter_key(quota_redis_namespace(), scope.tenant_id, scope.counter_id, window)
        try:
            value = redis_client().get(key)
        except RedisError:
            return None
        return int(value) if value is not None else None
    period = QuotaCounter.Period.DAY if window.period == DAILY else QuotaCounter.Period.MONTH
    return (
        QuotaCounter.objects.filter(scope=scope.counter_id, period=period, period_start=window.start_date)
        .values_list("used", flat=True)
        .first()
    )


def usage_report(*, principal: Principal, days: int = 30, now: datetime | None = None) -> dict:
    """What ``GET /v1/usage`` answers: the caller's tenant's limits, quota consumption and history."""
    now = now or datetime.now(UTC)
    today = window_for(DAILY, now).start
    since = today - timedelta(days=days - 1)
    until = today + timedelta(days=1)
    summary = usage_summary(tenant=principal.tenant_id, since=since, until=until)
    return {
        "tenant": principal.tenant_slug,
        "key_prefix": principal.key_prefix,
        "limits": principal.limits,
        "quotas": quota_usage_current(scopes=principal.effective_quota_scopes(), now=now),
        "rate": [
            {
                "scope": "key" if s.counter_id.startswith("k:") else "tenant",
                "per_second": s.rate_per_second,
                "burst": s.effective_burst,
            }
            for s in principal.effective_quota_scopes()
            if s.rate_per_second is not None
        ],
        "summary": summary,
    }
