"""Celery beat entries of the audit trail, for ``settings.CELERY_BEAT_SCHEDULE``.

Django-free so the settings module can import it::

    from audit.schedule import audit_beat_schedule
    CELERY_BEAT_SCHEDULE.update(audit_beat_schedule(seal_interval_seconds=AUDIT_SEAL_INTERVAL_SECONDS))
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab


def audit_beat_schedule(*, seal_interval_seconds: int = 60) -> dict[str, dict[str, Any]]:
    """Sealing every ``seal_interval_seconds``, the retention purge daily at 03:17 UTC, shredding at 00:07,
    the event table's monthly partitions ensured daily at 02:47 (months ahead, so a missed run or two costs nothing).

    Verification: incremental every day at 04:37 UTC (bounded by one day's
    blocks), a full pass every Sunday at 05:07 (old events are re-read only
    by a full pass).
    """
    return {
        "audit-seal": {
            "task": "audit.seal",
            "schedule": float(seal_interval_seconds),
            # A seal run that waited longer than one interval is superseded by the next.
            "options": {"expires": float(seal_interval_seconds)},
        },
        "audit-purge": {
            "task": "audit.purge",
            "schedule": crontab(hour=3, minute=17),
        },
        "audit-partitions-ensure": {
            "task": "audit.partitions_ensure",
            "schedule": crontab(hour=2, minute=47),
        },
        # Retention keys expire at 00:00 UTC of their day; shredding runs right after.
        "audit-shred-retained-inputs": {
            "task": "audit.shred_retained_inputs",
            "schedule": crontab(hour=0, minute=7),
        },
        "audit-verify": {
            "task": "audit.verify",
            "schedule": crontab(hour=4, minute=37),
            "args": ("system:audit.verify",),
        },
        "audit-verify-full": {
            "task": "audit.verify",
            "schedule": crontab(hour=5, minute=7, day_of_week=0),
            "args": ("system:audit.verify",),
            "kwargs": {"full": True},
        },
    }
