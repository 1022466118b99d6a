"""Per-process caches that every process invalidates within about a second.

Used for API keys, compiled policy state and the active-model map.  Reading
the generation table costs one indexed query per check interval per process,
never one per request.  ``generation_bump`` runs inside the writer's
transaction, so readers never see the bump before the change itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import F

from core.models import Generation

KEYS = "keys"
POLICY = "policy"
MODELS = "models"

T = TypeVar("T")


def generation_bump(*, kind: str) -> None:
    """Advance ``kind``'s counter so every process drops its cached state of that kind."""
    with transaction.atomic():
        updated = Generation.objects.filter(kind=kind).update(value=F("value") + 1)
        if not updated:
            _, created = Generation.objects.get_or_create(kind=kind, defaults={"value": 1})
            if not created:
                Generation.objects.filter(kind=kind).update(value=F("value") + 1)


class _GenerationClock:
    """Reads all counters at most once per interval; shared by every cache in a process.

    ``monotonic`` is injectable so tests can start the clock at zero uptime:
    ``time.monotonic()`` counts from boot, so on a machine up for less than the
    check interval any "0.0 means never read" sentinel would look recent and the
    first read would be skipped. ``None`` is the only "never read" value.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._checked_at: float | None = None
        self._values: dict[str, int] = {}

    def _due(self, now: float) -> bool:
        return self._checked_at is None or now - self._checked_at >= settings.INVALIDATION_CHECK_SECONDS

    def values(self) -> dict[str, int]:
        """The generation counters, read from the database at most once per interval."""
        now = self._monotonic()
        if not self._due(now):
            return self._values
        with self._lock:
            if self._due(now):
                # A failure here (database down) propagates: callers decide
                # whether stale state may be served or must fail closed.
                self._values = dict(Generation.objects.values_list("kind", "value"))
                self._checked_at = self._monotonic()
        return self._values

    def reset(self) -> None:
        """Force the next read to hit the database (tests, and right after a local write)."""
        with self._lock:
            self._checked_at = None

    def use_time_source(self, monotonic: Callable[[], float]) -> None:
        """Read time from ``monotonic`` from now on (tests start it at zero uptime) and force a read."""
        with self._lock:
            self._monotonic = monotonic
            self._checked_at = None


clock = _GenerationClock()


class LocalCache(Generic[T]):
    """A per-process dict whose entries die when ``kind``'s generation moves.

    ``get_or_load`` never caches a loader's exception, so a missing key is
    looked up again next time (negative results can be cached by returning a
    sentinel value from the loader).
    """

    def __init__(self, kind: str, max_entries: int = 10_000):
        self.kind = kind
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._data: dict[Hashable, T] = {}

    def _sync(self) -> None:
        generation = clock.values().get(self.kind, 0)
        if generation != self._generation:
            with self._lock:
                self._data = {}
                self._generation = generation

    def get_or_load(self, key: Hashable, loader: Callable[[], T]) -> T:
        """Return the cached value for ``key`` or load, cache and return it."""
        self._sync()
        try:
            return self._data[key]
        except KeyError:
            pass
        value = loader()
        with self._lock:
            if len(self._data) >= self.max_entries:
                self._data.clear()
            self._data[key] = value
        return value

    def clear(self) -> None:
        """Drop every entry in this process."""
        with self._lock:
            self._data = {}

    def peek(self, key: Hashable) -> Any:
        """The cached value or ``None`` without loading (for tests and metrics)."""
        return self._data.get(key)
