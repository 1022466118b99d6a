"""Structured JSON logging with the request id of the current request.

The request id lives in a ``contextvars.ContextVar`` so that every log line a
request causes (in the view, a service or the database layer) carries it,
with no need to pass it around.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from typing import Any

from core.sanitize import credentials_redact

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
_tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="")


def current_request_id() -> str:
    """The id of the request being handled, or ``""`` outside a request."""
    return _request_id.get()


def set_request_context(*, request_id: str | None = None, tenant: str | None = None) -> None:
    """Bind the request id and/or tenant slug to the current context."""
    if request_id is not None:
        _request_id.set(request_id)
    if tenant is not None:
        _tenant.set(tenant)


def request_context_reset() -> None:
    """Forget the request id and tenant: called when a request or a Celery task ends (and as a task starts).

    A context variable set in a worker thread outlives the request that set
    it; without this, log lines written between requests -- or by the next
    request before it binds its own id -- would carry the previous one.
    """
    _request_id.set("")
    _tenant.set("")


def current_tenant_slug() -> str:
    """The tenant bound to the current request, or ``""``."""
    return _tenant.get()


class RequestContextFilter(logging.Filter):
    """Adds ``request_id`` and ``tenant`` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = _request_id.get()
        if not getattr(record, "tenant", None):
            record.tenant = _tenant.get()
        return True


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and extras."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        # The last net under every logger (Django's own request logger prints full paths): no key secret
        # reaches a log line, whichever field or message carried it.
        return credentials_redact(json.dumps(payload, default=str))
