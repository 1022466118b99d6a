"""Live statistics in the request path, and their flush to the database from outside it.

Request path (``gateway.pipeline.GovernedCall``): :func:`live_batch_record`
after the audit record of a served batch, :func:`live_outcome_record` for
every audited outcome on a known model.  Both reduce to counts with numpy and
add them to this process's :class:`~monitoring.live.LiveStats` under a lock;
they never touch the database (apart from one cached read of a version's bins)
and never raise into the request: statistics must not fail a prediction.

Flush: a daemon thread per process wakes after each window boundary and
merges the closed windows into ``LiveWindow`` rows (:func:`live_window_merge`),
and the process flushes everything at exit (``atexit``, and gunicorn's
``worker_exit`` hook in ``gateway.gunicorn_conf``).  The merge inserts the row
if missing (INSERT ... ON CONFLICT DO NOTHING), then locks it (``SELECT ... FOR
UPDATE``; SQLite's IMMEDIATE transactions serialise writers) and adds the
counts, so any number of processes flushing the same window at once lose
nothing.  A flush the database refuses is put back and retried next time.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from inference.models import ModelVersion
from inference.profile import features_matrix
from monitoring.live import LiveStats, WindowCounts, WindowKey, batch_counts
from monitoring.models import LiveWindow
from monitoring.selectors import live_bins_get

logger = logging.getLogger("monitoring.live")

_stats: LiveStats | None = None
_owner_pid: int | None = None
_flusher: threading.Thread | None = None
_stop = threading.Event()
_setup_lock = threading.Lock()


def live_stats() -> LiveStats:
    """This process's live statistics (a forked child starts empty and starts its own flusher)."""
    global _stats, _owner_pid, _flusher
    pid = os.getpid()
    if _stats is not None and _owner_pid == pid:
        return _stats
    with _setup_lock:
        if _stats is None or _owner_pid != pid:
            # A fork copies the parent's counts: the child must not flush them a second time.
            _stats = LiveStats(window_seconds=settings.MONITORING_WINDOW_SECONDS)
            _owner_pid = pid
            _flusher = None
            if settings.MONITORING_FLUSH_THREAD:
                _flusher = threading.Thread(target=_flush_loop, name="live-stats-flusher", daemon=True)
                _flusher.start()
                atexit.register(_flush_at_exit, pid)
    return _stats


def live_batch_record(
    *, model: Any, feeds: Any, probabilities: np.ndarray | None, values: np.ndarray | None, review_flags: int
) -> None:
    """Count one served batch of ``model`` (a ``ServedModel``); never raises."""
    if not settings.MONITORING_LIVE_STATS:
        return
    try:
        bins = live_bins_get(name=model.name, version=model.version)
        counts = batch_counts(
            bins=bins,
            features=_live_features(feeds),
            probabilities=probabilities,
            values=values,
            review_flags=review_flags,
        )
        live_stats().add_batch(name=model.name, version=model.version, bins=bins, batch=counts)
    except Exception:  # statistics never fail a served request
        logger.warning("live statistics could not count a batch", exc_info=True)


def _live_features(feeds: Any) -> np.ndarray | None:
    """The batch as [n, F] without copying a one-input batch (the comparison upcasts on the fly)."""
    if feeds is None:
        return None
    arrays = [feeds] if isinstance(feeds, np.ndarray) else list(feeds.values())
    if len(arrays) == 1:
        return arrays[0].reshape(arrays[0].shape[0], -1)
    return features_matrix(feeds)


def live_outcome_record(*, model: Any, status: int, denied: bool) -> None:
    """Count one governed outcome (request, client error, denial, server error) of ``model``; never raises."""
    if not settings.MONITORING_LIVE_STATS:
        return
    try:
        bins = live_bins_get(name=model.name, version=model.version)
        live_stats().add_outcome(name=model.name, version=model.version, bins=bins, status=status, denied=denied)
    except Exception:  # statistics never fail a request
        logger.warning("live statistics could not count an outcome", exc_info=True)


def _merge_lists(current: list[int], incoming: list[int]) -> list[int]:
    if not current:
        return list(incoming)
    if len(current) != len(incoming):
        return current  # other bins (a profile replaced mid-window): keep the first
    return (np.asarray(current, dtype=np.int64) + np.asarray(incoming, dtype=np.int64)).tolist()


def live_window_merge(*, model_name: str, version: int, window_start: int, counts: dict[str, Any]) -> LiveWindow:
    """Add one process's counts of a window into its row (created if missing); safe against concurrent merges.

    ``counts`` is :meth:`~monitoring.live.WindowCounts.as_record`.  Feature
    counts over other bins than the row's (a reference profile replaced in the
    middle of a window) are dropped; every scalar count is kept.
    """
    model_version_id = (
        ModelVersion.objects.filter(name=model_name, version=version).values_list("pk", flat=True).first()
    )
    if model_version_id is None:
        raise LookupError(f"no model version {model_name}@{version}")
    start = datetime.fromtimestamp(window_start, tz=UTC)
    window_seconds = settings.MONITORING_WINDOW_SECONDS
    with transaction.atomic():
        # The upsert's insert half: concurrent flushers may all try; the unique constraint keeps one row.
        LiveWindow.objects.bulk_create(
            [
                LiveWindow(
                    model_version_id=model_version_id,
                    window_start=start,
                    window_seconds=window_seconds,
                    profile_digest=counts["profile_digest"],
                    feature_slots=counts["feature_slots"],
                )
            ],
            ignore_conflicts=True,
        )
        # The update half, under the row lock: each flush adds to what the previous one left.
        row = LiveWindow.objects.select_for_update().get(model_version_id=model_version_id, window_start=start)
        for name in ("requests", "instances", "client_errors", "denials", "server_errors", "review_flags", "nonfinite"):
            setattr(row, name, getattr(row, name) + counts[name])
        same_bins = row.profile_digest == counts["profile_digest"]
        if same_bins:
            row.feature_counts = _merge_lists(row.feature_counts, counts["feature_counts"])
            row.prediction_counts = _merge_lists(row.prediction_counts, counts["prediction_counts"])
        row.confidence_counts = _merge_lists(row.confidence_counts, counts["confidence_counts"])
        row.flushes += 1
        row.updated_at = timezone.now()
        row.save()
    return row


def live_stats_flush(*, closed_only: bool = False) -> int:
    """Write this process's windows (only closed ones with ``closed_only``); returns how many were merged.

    A window the database refuses is put back into the process and carried by
    the next flush, so an outage delays counts without losing them.
    """
    if _stats is None or _owner_pid != os.getpid():
        return 0  # nothing counted in this process (a worker that never served, a fresh fork)
    stats = _stats
    drained: list[tuple[WindowKey, WindowCounts]] = stats.drain(
        closed_before=stats.window_start() if closed_only else None
    )
    merged = 0
    for key, counts in drained:
        name, version, start, _digest = key
        try:
            live_window_merge(model_name=name, version=version, window_start=start, counts=counts.as_record())
            merged += 1
        except LookupError:
            logger.warning("live statistics of an unknown model version dropped", extra={"model": f"{name}@{version}"})
        except Exception:
            logger.warning("live statistics flush failed; kept for the next flush", exc_info=True)
            stats.put_back(key, counts)
    return merged


def _flush_loop() -> None:
    """The flusher thread: after each window boundary, merge the windows that closed."""
    while True:
        window = settings.MONITORING_WINDOW_SECONDS
        # Wake a moment after the boundary, so the closed window has all of this process's counts.
        delay = window - (time.time() % window) + 1.0
        if _stop.wait(timeout=delay):
            return
        try:
            live_stats_flush(closed_only=True)
        except Exception:
            logger.warning("live statistics flusher failed", exc_info=True)
        finally:
            # This thread's own connection: never kept across windows (it would outlive DB_CONN_MAX_AGE).
            connections.close_all()


def _flush_at_exit(pid: int) -> None:
    if os.getpid() != pid:
        return  # a forked child inherits atexit handlers
    try:
        live_stats_flush()
    except Exception:
        logger.warning("live statistics could not be flushed at exit", exc_info=True)


def live_stats_reset() -> None:
    """Forget this process's counts (tests)."""
    if _stats is not None:
        _stats.clear()
