"""Celery tasks of the tenants app."""

from __future__ import annotations

from celery import shared_task

from tenants.services.auth_failures import auth_floods_flush


@shared_task(name="tenants.auth_floods_flush")
def auth_floods_flush_task() -> int:
    """Record the failed-authentication floods of ended windows (one aggregated audit event each)."""
    return auth_floods_flush()
