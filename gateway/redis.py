"""The process-wide Redis client, present only when ``REDIS_URL`` is set.

Short socket timeouts: a Redis outage must become a quick 503 (or a fail-open
admission), never a request that hangs until the load balancer gives up.
"""

from __future__ import annotations

import threading

import redis
from django.conf import settings

_lock = threading.Lock()
_client: redis.Redis | None = None


def redis_enabled() -> bool:
    """True when the deployment configured Redis."""
    return bool(settings.REDIS_URL)


def redis_client() -> redis.Redis:
    """A shared client (its pool is thread-safe); raises if Redis is not configured."""
    global _client
    if not settings.REDIS_URL:
        raise RuntimeError("REDIS_URL is not set")
    if _client is None:
        with _lock:
            if _client is None:
                _client = redis.Redis.from_url(
                    settings.REDIS_URL,
                    socket_connect_timeout=0.5,
                    socket_timeout=0.5,
                    health_check_interval=10,
                    retry_on_timeout=False,
                )
    return _client


def redis_reset() -> None:
    """Forget the client (tests that point REDIS_URL elsewhere)."""
    global _client
    with _lock:
        _client = None
