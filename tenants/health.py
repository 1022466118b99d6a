"""Readiness of the quota backend (registered with ``core.health``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from core.redis import redis_client, redis_enabled


def quota_backend_check() -> dict[str, Any]:
    """Redis: the reserve script is loadable (scripting works); database: the counter table answers.

    With ``QUOTA_FAIL_OPEN`` a Redis outage does not make the gateway unready
    (it still serves, flagged), so the check reports it instead of failing.
    """
    if redis_enabled():
        from tenants.quota.redis import _RESERVE_SOURCE

        try:
            sha = redis_client().script_load(_RESERVE_SOURCE)
        except Exception as exc:
            if settings.QUOTA_FAIL_OPEN:
                return {"backend": "redis", "degraded": f"failing open: {type(exc).__name__}"}
            raise
        return {"backend": "redis", "script": sha[:12], "fail_open": settings.QUOTA_FAIL_OPEN}
    from tenants.models import QuotaCounter

    QuotaCounter.objects.exists()
    return {"backend": "database"}
