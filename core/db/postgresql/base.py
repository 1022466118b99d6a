"""Django's PostgreSQL backend with health checks only for connections that sat idle.

Django's ``CONN_HEALTH_CHECKS`` runs ``SELECT 1`` before the first query of
*every* request on a persistent connection.  On the governed path, whose only
database statement is the audit INSERT, that doubled the round trips: the
issue's budget is one.  Like pgbouncer's ``server_check_delay``, this backend
skips the check when the connection was used within
``DB_HEALTH_CHECK_IDLE_SECONDS`` (the database setting
``HEALTH_CHECK_IDLE_SECONDS``, default 5 s), and checks it otherwise.

A connection that broke while in use (the server restarted under load) still
recovers by itself: the statement fails (the request gets a 503 and its audit
outcome is unchanged: nothing is served unrecorded), Django marks the wrapper
``errors_occurred`` and ``close_old_connections`` drops the connection at the
end of that request, so the next request reconnects.
"""

from __future__ import annotations

import time
from typing import Any

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    """``postgresql.DatabaseWrapper`` whose per-request health check is skipped while the connection is busy."""

    def __init__(self, settings_dict: dict[str, Any], alias: str = "default") -> None:
        super().__init__(settings_dict, alias)
        self.health_check_idle_seconds = float(settings_dict.get("HEALTH_CHECK_IDLE_SECONDS", 0.0))
        # None, not 0.0: monotonic time counts from boot, so 0.0 would look recent on a young machine.
        self._last_used: float | None = None

    def connect(self) -> None:
        """Open a connection (a fresh one needs no health check)."""
        super().connect()
        self._last_used = time.monotonic()

    def close_if_health_check_failed(self) -> None:
        """Django's check, run only when the connection sat idle longer than the configured delay."""
        now = time.monotonic()
        idle = None if self._last_used is None else now - self._last_used
        self._last_used = now
        if (
            self.connection is not None
            and not self.health_check_done
            and idle is not None
            and idle < self.health_check_idle_seconds
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
