"""Writes of the supervision app, re-exported from one place.

* :mod:`~monitoring.services.live_stats`: counting in the request path, flushing windows.
* :mod:`~monitoring.services.monitors`: judging closed windows against the ``monitoring`` rules.
"""

from monitoring.errors import AlertConflict
from monitoring.services.alerts import alert_close, alert_raise
from monitoring.services.live_stats import (
    live_batch_record,
    live_outcome_record,
    live_stats,
    live_stats_flush,
    live_stats_reset,
    live_window_merge,
)
from monitoring.services.monitors import window_evaluate, windows_evaluate_due

__all__ = [
    "AlertConflict",
    "alert_close",
    "alert_raise",
    "live_batch_record",
    "live_outcome_record",
    "live_stats",
    "live_stats_flush",
    "live_stats_reset",
    "live_window_merge",
    "window_evaluate",
    "windows_evaluate_due",
]
