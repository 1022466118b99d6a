"""Domain errors of the supervision app (subclasses of :mod:`core.errors`)."""

from __future__ import annotations

from core.errors import Conflict


class AlertConflict(Conflict):
    """Closing an alert that is already closed."""

    code, title = "alert_conflict", "Alert conflict"
