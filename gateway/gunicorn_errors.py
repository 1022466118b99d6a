"""Gunicorn's own rejections answered as problem documents instead of HTML.

Gunicorn refuses some requests before the application sees them: a request
line longer than ``limit_request_line`` (414), too many or too large header
fields (431), a header that is not valid HTTP -- a NUL, a bare CR, an invalid
name (400) -- and a few more.  It writes those answers with
``gunicorn.util.write_error``, as ``text/html``; :func:`install` replaces that
function (in the master, before workers fork) with one that writes
``application/problem+json`` with a stable ``code``, an ``X-Request-ID`` and
no echo of the offending bytes.

What remains (documented in the README): these requests never reach Django,
so they are not in the audit trail -- gunicorn's error log records each one
("Invalid request from ip=...") -- and a proxy in front answers its own
limits with its own pages.  Django-free: imported by the gunicorn
configuration.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

PROBLEM_TYPE_BASE = "https://maas.example/problems/"
_CODES = {
    400: ("malformed_request", "Malformed request", "The request is not valid HTTP (request line or headers)."),
    403: ("forbidden", "Forbidden", "The request was refused before it reached the gateway."),
    414: ("uri_too_long", "URI too long", "The request line exceeds the server's limit."),
    417: ("expectation_failed", "Expectation failed", "The Expect header cannot be met."),
    431: (
        "header_fields_too_large",
        "Request header fields too large",
        "Too many header fields, or one exceeds the server's limit.",
    ),
    501: ("not_implemented", "Not implemented", "The transfer coding is not supported."),
}


def problem_bytes(status: int, reason: str) -> bytes:
    """The complete HTTP/1.1 response (status line, headers, problem body) for a rejection."""
    code, title, detail = _CODES.get(
        status, ("internal_error", "Internal server error", "The server could not handle the request.")
    )
    request_id = uuid.uuid4().hex
    body = json.dumps(
        {
            "type": PROBLEM_TYPE_BASE + code,
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
            "request_id": request_id,
        }
    ).encode()
    # The reason phrase is gunicorn's own constant text; latin-1 as HTTP/1.1 requires.
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/problem+json\r\n"
        f"X-Request-ID: {request_id}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def write_problem(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error``: same arguments, a problem document on the wire."""
    from gunicorn import util

    util.write_nonblock(sock, problem_bytes(int(status_int), reason))


def install() -> None:
    """Make gunicorn write its rejections with :func:`write_problem` (idempotent)."""
    from gunicorn import util

    util.write_error = write_problem
