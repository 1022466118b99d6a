"""Celery tasks of the tenants app."""

from __future__ import annotations

from celery import shared_task

from tenants.services.auth_failures import auth_floods_flush
from tenants.services.usage_rollups import rollup_max_batches, usage_rollups_advance


@shared_task(name="tenants.auth_floods_flush")
def auth_floods_flush_task() -> int:
    """Record the failed-authentication floods of ended windows (one aggregated audit event each)."""
    return auth_floods_flush()


@shared_task(name="tenants.usage_rollups_advance")
def usage_rollups_advance_task() -> dict:
    """Fold the audit events recorded since the last run into the usage rollups (idempotent, restartable).

    Bounded per run (``USAGE_ROLLUP_MAX_BATCHES``) so a large backlog is
    worked off over several beat ticks instead of one run past the time limit.
    """
    result = usage_rollups_advance(max_batches=rollup_max_batches())
    return {"batches": result.batches, "events": result.events, "late_events": result.late_events}
