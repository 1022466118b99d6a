"""Issue 13, item 8: API keys never reach the access log or the audit trail from a URL.

``GET /v1/models/<a full key>`` used to write the secret into the access log
and the immutable audit ``path``.  Key-shaped strings are now redacted from
paths and query strings before anything is logged or recorded, and a key in
the query string is refused with 400 ``credentials_in_url`` (recorded redacted).
"""

from __future__ import annotations

import json
import logging

import pytest

from audit.models import AuditEvent
from core.logging import JsonFormatter
from core.sanitize import credentials_in_query, credentials_redact
from tests.support import assert_problem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _secret(key: str) -> str:
    return key.partition(".")[2]


def _everything_recorded() -> str:
    return json.dumps([list(AuditEvent.objects.values())], default=str)


def test_a_key_in_the_path_is_redacted_in_the_audit_row_and_the_access_log(client, digits, make_caller, caplog):
    caplog.set_level(logging.INFO, logger="gateway.access")
    caller, victim = make_caller(), make_caller()
    response = client.get(f"/v1/models/{victim.key}", **caller.headers)
    assert_problem(response, 404, "model_not_found")
    row = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert row.path == f"/v1/models/{victim.prefix}.[redacted]"
    assert _secret(victim.key) not in _everything_recorded()
    lines = [JsonFormatter().format(r) for r in caplog.records if r.name == "gateway.access"]
    assert lines and all(_secret(victim.key) not in line for line in lines)
    assert any(f"{victim.prefix}.[redacted]" in line for line in lines)


@pytest.mark.parametrize("query", ["api_key={key}", "x={key}", "access_token=abc", "q=Bearer%20{key}"])
def test_a_key_in_the_query_string_is_refused_and_recorded_redacted(client, digits, make_caller, caplog, query):
    caplog.set_level(logging.INFO, logger="gateway.access")
    caller = make_caller()
    response = client.get(f"/v1/models?{query.format(key=caller.key)}")
    assert_problem(response, 400, "credentials_in_url")
    row = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert row.http_status == 400 and row.error_code == "credentials_in_url" and row.path == "/v1/models"
    assert _secret(caller.key) not in _everything_recorded()
    assert all(_secret(caller.key) not in JsonFormatter().format(r) for r in caplog.records)


def test_a_key_in_the_query_string_is_refused_even_with_a_valid_header(client, digits, make_caller):
    caller = make_caller()
    response = client.get(f"/v1/models?key={caller.key}", **caller.headers)
    assert_problem(response, 400, "credentials_in_url")


def test_ordinary_query_strings_pass():
    assert not credentials_in_query("format=csv&since=2026-01-01&tenant=acme_corp.eu")
    assert credentials_redact("maas_abcdefghjkmn.shorter") == "maas_abcdefghjkmn.shorter"


def test_no_log_line_carries_a_key_secret_whatever_logger_wrote_it(make_caller):
    caller = make_caller()
    record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Service Unavailable: %s", (), None)
    record.args = (f"/v1/models/{caller.key}",)
    record.request = f"<WSGIRequest: GET '/v1/models/{caller.key}'>"
    line = JsonFormatter().format(record)
    assert _secret(caller.key) not in line and f"{caller.prefix}.[redacted]" in line
