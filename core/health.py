"""Liveness and readiness.

``/healthz`` answers without touching any dependency (a load balancer's
liveness probe must not fail because PostgreSQL is slow).  ``/readyz`` checks
the database, the cache/Redis, the Celery broker and whatever the apps
register (the inference app registers the active model), and answers 503
naming each dependency that failed.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from core.logging import current_request_id

logger = logging.getLogger("gateway.health")

ReadinessCheck = Callable[[], dict[str, Any]]
_checks: dict[str, ReadinessCheck] = {}


def register_readiness_check(name: str, check: ReadinessCheck) -> None:
    """Register ``check`` under ``name``; it returns details and raises on failure."""
    _checks[name] = check


def _check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"vendor": connection.vendor}


def _check_cache() -> dict[str, Any]:
    if settings.REDIS_URL:
        from core.redis import redis_client

        client = redis_client()
        client.ping()
        return {"backend": "redis"}
    cache.set("readyz", "1", 5)
    if cache.get("readyz") != "1":
        raise RuntimeError("cache round trip failed")
    return {"backend": "file"}


def _check_broker() -> dict[str, Any]:
    # The process's Celery app (the project's, created when Django loads); core imports no project module.
    from celery import current_app as app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=1)
        transport = conn.transport_cls
    return {"transport": str(transport)}


register_readiness_check("database", _check_database)
register_readiness_check("cache", _check_cache)
register_readiness_check("broker", _check_broker)


def readiness_report() -> tuple[bool, dict[str, Any]]:
    """Run every check; return (all ok, per-check results)."""
    results: dict[str, Any] = {}
    ok = True
    for name, check in _checks.items():
        started = time.perf_counter()
        try:
            details = check() or {}
            results[name] = {"status": "ok", **details}
        except Exception as exc:  # a failed dependency is data here, not an error
            ok = False
            logger.warning("readiness check failed", extra={"check": name, "error": str(exc)})
            results[name] = {"status": "fail", "error": f"{type(exc).__name__}: {exc}"[:300]}
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 2)
    return ok, results


def metrics_authorised(request: HttpRequest) -> bool:
    """Operators only: a staff session or ``Authorization: Bearer <METRICS_TOKEN>`` (metrics, detailed readiness)."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return True
    token = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header[7:].strip().encode(), token.encode())
    return False


@csrf_exempt  # a probe changes nothing: a POST is answered 405, not a CSRF refusal
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: every dependency answers; 503 otherwise.

    The public answer says only ready or not ready: which backends run, which
    failed and how (hosts, key ids, checksums) helps an attacker, not a load
    balancer.  Staff sessions and ``Authorization: Bearer <METRICS_TOKEN>``
    get the per-check report.
    """
    ok, results = readiness_report()
    detailed = metrics_authorised(request)
    failed = [name for name, r in results.items() if r["status"] != "ok"]
    body: dict[str, Any] = {"status": "ok" if ok else "unavailable", "request_id": current_request_id()}
    if detailed:
        body["checks"] = results
    if not ok:
        body.update(
            {
                "type": "https://maas.example/problems/dependency_unavailable",
                "title": "Dependency unavailable",
                "status": 503,
                "code": "dependency_unavailable",
                "detail": "Not ready: " + ", ".join(failed) + " failed." if detailed else "Not ready.",
            }
        )
        return JsonResponse(body, status=503, content_type="application/problem+json", headers={"Retry-After": "5"})
    return JsonResponse(body)
