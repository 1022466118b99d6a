"""Writes of the supervision app, re-exported from one place.

* :mod:`~monitoring.services.live_stats`: counting in the request path, flushing windows.
* :mod:`~monitoring.services.monitors`: judging closed windows against the ``monitoring`` rules.
* :mod:`~monitoring.services.alerts`, :mod:`~monitoring.services.incidents`: the alert and incident desk.
* :mod:`~monitoring.services.bundle`: regulator bundles per incident.
"""

from monitoring.errors import AlertConflict
from monitoring.services.alerts import alert_close, alert_raise
from monitoring.services.bundle import incident_bundle_build, incident_bundle_request, regulator_bundle_file
from monitoring.services.incidents import (
    evidence_frozen_check,
    incident_close,
    incident_escalate,
    incident_kill_switch,
    incident_mark_reported,
    incident_note_add,
    incident_open,
    incident_release,
)
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
    "evidence_frozen_check",
    "incident_bundle_build",
    "incident_bundle_request",
    "incident_close",
    "incident_escalate",
    "incident_kill_switch",
    "incident_mark_reported",
    "incident_note_add",
    "incident_open",
    "incident_release",
    "live_batch_record",
    "live_outcome_record",
    "live_stats",
    "live_stats_flush",
    "live_stats_reset",
    "live_window_merge",
    "regulator_bundle_file",
    "window_evaluate",
    "windows_evaluate_due",
]
