"""Quota windows and counter names (Django-free).

Daily and monthly quotas are calendar windows in UTC, so that a tenant, an
admin and the usage API agree on "today" whatever the server's time zone.
The rate limit is a token bucket (no window): it allows ``burst`` requests at
once and refills ``rate_per_second`` tokens a second, which unlike a fixed
window never lets twice the burst through across a window boundary.

Redis keys carry the tenant in a hash tag (``{t:42}``) so that every counter
one request touches lives in one Redis Cluster slot, as a Lua script needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

DAILY = "daily"
MONTHLY = "monthly"
RATE = "rate"


@dataclass(frozen=True)
class Window:
    """One calendar window: its first day and its bounds as aware UTC datetimes."""

    period: str
    start_date: date
    start: datetime
    end: datetime

    @property
    def seconds(self) -> int:
        """The window's length in seconds."""
        return int((self.end - self.start).total_seconds())

    def seconds_left(self, now: datetime) -> int:
        """Whole seconds until the window ends, at least 1 (a Retry-After of 0 invites a hot loop)."""
        return max(1, int(-(-(self.end - now).total_seconds() // 1)))


def day_window(now: datetime) -> Window:
    """The UTC day containing ``now``."""
    now = now.astimezone(UTC)
    start = datetime(now.year, now.month, now.day, tzinfo=UTC)
    return Window(DAILY, start.date(), start, start + timedelta(days=1))


def month_window(now: datetime) -> Window:
    """The UTC calendar month containing ``now``."""
    now = now.astimezone(UTC)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    end = (
        datetime(now.year + 1, 1, 1, tzinfo=UTC)
        if now.month == 12
        else datetime(now.year, now.month + 1, 1, tzinfo=UTC)
    )
    return Window(MONTHLY, start.date(), start, end)


def window_for(period: str, now: datetime) -> Window:
    """The window of ``period`` (``daily`` or ``monthly``) containing ``now``."""
    if period == DAILY:
        return day_window(now)
    if period == MONTHLY:
        return month_window(now)
    raise ValueError(f"not a calendar period: {period!r}")


def redis_counter_key(namespace: str, tenant_id: int, counter_id: str, window: Window) -> str:
    """The Redis key of a daily or monthly counter, e.g. ``maas:q:{t:7}:t:7:d:20250131``."""
    tag = "d" if window.period == DAILY else "m"
    stamp = window.start_date.strftime("%Y%m%d" if window.period == DAILY else "%Y%m")
    return f"{namespace}:{{t:{tenant_id}}}:{counter_id}:{tag}:{stamp}"


def redis_bucket_key(namespace: str, tenant_id: int, counter_id: str) -> str:
    """The Redis key of a token bucket, e.g. ``maas:q:{t:7}:k:12:r``."""
    return f"{namespace}:{{t:{tenant_id}}}:{counter_id}:r"


def counter_ttl_seconds(window: Window, now: datetime) -> int:
    """Keep a counter two days past its window, so late refunds still find it; then Redis drops it."""
    return max(1, int((window.end - now).total_seconds())) + 2 * 86400
