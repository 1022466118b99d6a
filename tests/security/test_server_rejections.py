"""Issue 13, item 10: requests gunicorn refuses itself are answered as problem documents.

A 9 KB URL (414), 150 header fields or one of 9 KB (431), and a NUL inside a
header value (400) never reach Django; gunicorn used to answer them as
``text/html``.  They now come back as ``application/problem+json`` with a
stable code and a request id, and without echoing the offending bytes.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest

from gateway.gunicorn_errors import problem_bytes
from tests.support import gateway_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded, pytest.mark.e2e]


def _raw(base: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    # Module-scoped, so set up before the per-test settings: the failed-authentication limits of the
    # other tests' requests from this same address must not throttle this server's answers.
    limits = {"AUTH_FAILURE_LIMIT": "1000000000", "AUTH_FAILURE_VERBATIM": "1000000000"}
    with django_db_blocker.unblock(), gateway_server(workers=1, LOG_LEVEL="WARNING", **limits) as base:
        yield base


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        pytest.param(b"GET /v1/models/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long", id="414"),
        pytest.param(
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-F%d: v\r\n" % i for i in range(150)) + b"\r\n",
            431,
            "header_fields_too_large",
            id="431-count",
        ),
        pytest.param(
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n",
            431,
            "header_fields_too_large",
            id="431-size",
        ),
        pytest.param(
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Purpose: re\x00search\r\n\r\n", 400, "malformed_request", id="nul"
        ),
    ],
)
def test_server_level_rejections_are_problem_documents(server, request_bytes, status, code):
    answered, headers, body = _raw(server, request_bytes)
    assert answered == status
    assert headers["Content-Type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == status and problem["code"] == code
    assert problem["request_id"] == headers["X-Request-ID"]
    assert b"\x00" not in body and b"aaaa" not in body and b"vvvv" not in body


def test_within_the_limits_the_gateway_answers(server):
    request = b"GET /v1/models/" + b"a" * 4000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    status, headers, _ = _raw(server, request)
    assert status == 401 and headers["Content-Type"] == "application/problem+json", _


def test_problem_bytes_are_a_complete_response():
    head, _, body = problem_bytes(414, "URI Too Long").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414 URI Too Long\r\n")
    assert f"Content-Length: {len(body)}".encode() in head
