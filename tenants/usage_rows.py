"""The usage record of a tenant over a period, as grouped rows: rollups plus the events not in them.

A period ``[since, until)`` is read in three parts, so that its cost depends
on the period's length and not on the history behind it:

* the whole UTC hours inside it from :class:`~tenants.models.UsageRollup`
  (day rows for the whole days, hour rows for the hours at either end);
* of the events in those hours, the ones the rollups do not hold yet: past
  the watermark, or in one of its gaps (late commits, see
  ``tenants.services.usage_rollups``); a few seconds of traffic;
* the minutes before the first and after the last whole hour straight from
  the audit events (every caller today reads whole days, so these are empty).

Reading the rollups and the tail are separate statements, and an advance may
commit between them.  On PostgreSQL, outside a caller's transaction, the read
runs in one ``REPEATABLE READ READ ONLY`` transaction: one snapshot for all
its statements.  Otherwise (SQLite, or inside a transaction already open) it
retries when the watermark's ``version`` changed meanwhile, and after
``ATTEMPTS`` falls back to the events alone (exact, only slower).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Count, Max, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from audit.models import AuditEvent
from tenants.models import UsageRollup
from tenants.services.usage_rollups import gap_query, status_class, watermark_snapshot, watermark_version

REQUEST = AuditEvent.Type.REQUEST
ATTEMPTS = 5
HOUR = UsageRollup.Granularity.HOUR
DAY = UsageRollup.Granularity.DAY


@dataclass(frozen=True)
class UsageRow:
    """Events of one UTC day with the same kind, key, model version, status class and error code."""

    day: date
    request: bool
    key_prefix: str
    model_name: str
    model_version: int | None
    status_class: int
    error_code: str
    requests: int
    units: int
    latency_sum: float
    latency_count: int
    latency_max: float | None


def _ceil_hour(at: datetime) -> datetime:
    floor = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return floor if floor == at else floor + timedelta(hours=1)


def _floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_day(at: datetime) -> datetime:
    floor = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return floor if floor == at else floor + timedelta(days=1)


def _floor_day(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


class _Fold:
    """Sums rows with the same day and dimensions."""

    def __init__(self) -> None:
        self.groups: dict[tuple, list] = {}

    def add(self, key: tuple, requests: int, units: int, lat_sum: float, lat_count: int, lat_max) -> None:
        measures = self.groups.get(key)
        if measures is None:
            measures = self.groups[key] = [0, 0, 0.0, 0, None]
        measures[0] += requests
        measures[1] += units
        measures[2] += lat_sum
        measures[3] += lat_count
        if lat_max is not None and (measures[4] is None or lat_max > measures[4]):
            measures[4] = lat_max

    def rows(self) -> list[UsageRow]:
        return [UsageRow(*key, *measures) for key, measures in self.groups.items()]

    def events(self, events: QuerySet) -> None:
        _events_into(self, events)

    def rollups(self, rollups: QuerySet) -> None:
        _rollup_rows_into(self, rollups)


class _Units:
    """Sums ``units`` only, in the database (the quota rebuild needs nothing else)."""

    def __init__(self) -> None:
        self.total = 0

    def events(self, events: QuerySet) -> None:
        self.total += int(events.order_by().aggregate(total=Sum("units"))["total"] or 0)

    def rollups(self, rollups: QuerySet) -> None:
        self.total += int(rollups.order_by().aggregate(total=Sum("units"))["total"] or 0)


def _events_into(fold: _Fold, events: QuerySet) -> None:
    """Group ``events`` in the database by day and dimensions and add them to ``fold``."""
    grouped = (
        events.order_by()
        .annotate(day=TruncDate("occurred_at", tzinfo=UTC))
        .values("day", "event_type", "key_prefix", "model_name", "model_version", "http_status", "error_code")
        .annotate(
            n=Count("seq"),
            units_sum=Sum("units"),
            lat_sum=Sum("latency_ms"),
            lat_count=Count("latency_ms"),
            lat_max=Max("latency_ms"),
        )
    )
    for row in grouped:
        request = row["event_type"] == REQUEST
        version = row["model_version"]
        key = (
            row["day"],
            request,
            row["key_prefix"] or "",
            row["model_name"] or "",
            version,
            status_class(row["http_status"]),
            row["error_code"] or "",
        )
        if request:
            fold.add(
                key,
                int(row["n"]),
                int(row["units_sum"] or 0),
                float(row["lat_sum"] or 0.0),
                int(row["lat_count"]),
                row["lat_max"],
            )
        else:
            fold.add(key, 0, int(row["units_sum"] or 0), 0.0, 0, None)


def _events(tenant_id: int, key_prefixes: Sequence[str] | None, since: datetime, until: datetime | None) -> QuerySet:
    events = AuditEvent.objects.filter(tenant_id=tenant_id, occurred_at__gte=since)
    if until is not None:
        events = events.filter(occurred_at__lt=until)
    if key_prefixes is not None:
        events = events.filter(key_prefix__in=list(key_prefixes))
    return events


def _rollups(tenant_id: int, key_prefixes: Sequence[str] | None, start: datetime, end: datetime | None) -> QuerySet:
    """The rollups of the whole hours ``[start, end)``: day rows for whole days, hour rows for the rest."""
    d0 = _ceil_day(start)
    d1 = _floor_day(end) if end is not None else None
    spans = Q()
    if d1 is None or d0 < d1:
        spans |= Q(granularity=DAY, bucket_start__gte=d0, **({"bucket_start__lt": d1} if d1 is not None else {}))
        spans |= Q(granularity=HOUR, bucket_start__gte=start, bucket_start__lt=d0)
        if d1 is not None:
            spans |= Q(granularity=HOUR, bucket_start__gte=d1, bucket_start__lt=end)
    else:
        spans |= Q(granularity=HOUR, bucket_start__gte=start, bucket_start__lt=end)
    rollups = UsageRollup.objects.filter(spans, tenant_id=tenant_id)
    if key_prefixes is not None:
        rollups = rollups.filter(key_prefix__in=list(key_prefixes))
    return rollups


def _rollup_rows_into(fold: _Fold, rollups: QuerySet) -> None:
    for r in rollups.values_list(
        "bucket_start",
        "request",
        "key_prefix",
        "model_name",
        "model_version",
        "status_class",
        "error_code",
        "requests",
        "units",
        "latency_sum",
        "latency_count",
        "latency_max",
    ):
        version = None if r[4] == -1 else r[4]
        fold.add((r[0].astimezone(UTC).date(), r[1], r[2], r[3], version, r[5], r[6]), *r[7:])


def usage_rows(
    *, tenant_id: int, since: datetime, until: datetime | None = None, key_prefixes: Iterable[str] | None = None
) -> list[UsageRow]:
    """The tenant's usage in ``[since, until)`` (``until`` ``None``: no end) grouped by day and dimensions.

    ``key_prefixes`` narrows it to the events of those keys.  Exact up to the
    last committed event (module docstring).
    """
    return _read(_Fold, tenant_id, since, until, key_prefixes).rows()


def usage_units(
    *, tenant_id: int, since: datetime, until: datetime | None = None, key_prefixes: Iterable[str] | None = None
) -> int:
    """``SUM(units)`` of the tenant's (or those keys') events in ``[since, until)``, summed in the database."""
    return _read(_Units, tenant_id, since, until, key_prefixes).total


def _read(sink_type, tenant_id: int, since: datetime, until: datetime | None, key_prefixes: Iterable[str] | None):
    prefixes = None if key_prefixes is None else list(key_prefixes)
    first_hour = _ceil_hour(since)
    last_hour = _floor_hour(until) if until is not None else None
    if last_hour is not None and first_hour >= last_hour:
        sink = sink_type()
        sink.events(_events(tenant_id, prefixes, since, until))
        return sink
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        # One snapshot for every statement of the read: the watermark, the
        # rollups and the tail agree by construction, so no retry is needed.
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            sink = _attempt(sink_type, tenant_id, prefixes, since, until, first_hour, last_hour)
        if sink is not None:
            return sink
    for _ in range(ATTEMPTS):
        sink = _attempt(sink_type, tenant_id, prefixes, since, until, first_hour, last_hour)
        if sink is not None:
            return sink
    sink = sink_type()
    sink.events(_events(tenant_id, prefixes, since, until))
    return sink


def _attempt(sink_type, tenant_id, prefixes, since, until, first_hour, last_hour):
    """One read of edges, rollups and tail; ``None`` when an advance committed meanwhile."""
    version, last_seq, gaps = watermark_snapshot()
    sink = sink_type()
    if since < first_hour:
        sink.events(_events(tenant_id, prefixes, since, first_hour))
    if last_hour is not None and last_hour < until:
        sink.events(_events(tenant_id, prefixes, last_hour, until))
    sink.rollups(_rollups(tenant_id, prefixes, first_hour, last_hour))
    covered = _events(tenant_id, prefixes, first_hour, last_hour)
    sink.events(covered.filter(seq__gt=last_seq))
    for q in gap_query(gaps):
        sink.events(covered.filter(q))
    return sink if watermark_version() == version else None
