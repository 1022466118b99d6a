"""Issue 13, item 1: no request escapes the audit trail, whatever bytes it carries.

A lone surrogate (valid JSON, unencodable in UTF-8) or a NUL (PostgreSQL
refuses it in text) in a purpose, or ``%00`` in the path, used to answer 500
with no audit row or 503 ``audit_unavailable`` at will.  Now declared text is
refused with 400 ``malformed_request`` and observed text is escaped, and each
such request leaves exactly one audit row.
"""

from __future__ import annotations

import json

import pytest

from audit.models import AuditEvent
from audit.services import audit_event_record
from tests.support import assert_problem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

HOSTILE_PURPOSES = ["\ud800", "re\u0000search", "\udfff\ud800", "line\nbreak"]


def _one_row(response) -> AuditEvent:
    rows = list(AuditEvent.objects.filter(request_id=response["X-Request-ID"]))
    assert len(rows) == 1, f"expected exactly one audit row, got {len(rows)}"
    return rows[0]


def _post(client, path, body, caller, **extra):
    # json.dumps escapes the surrogate as the six characters \ud800: the body is valid JSON text.
    return client.post(path, data=json.dumps(body), content_type="application/json", **caller.headers, **extra)


@pytest.mark.parametrize("purpose", HOSTILE_PURPOSES)
def test_v1_predict_refuses_unencodable_purpose_and_audits_it(client, digits, make_caller, digit_rows, purpose):
    caller = make_caller()
    body = {"instances": digit_rows[:1].tolist(), "purpose": purpose}
    response = _post(client, "/v1/models/digits/predict", body, caller)
    assert_problem(response, 400, "malformed_request")
    row = _one_row(response)
    assert row.http_status == 400 and row.error_code == "malformed_request"
    assert row.units == 0 and row.key_prefix == caller.prefix


@pytest.mark.parametrize("purpose", HOSTILE_PURPOSES)
def test_v2_infer_refuses_unencodable_purpose_and_audits_it(client, digits, make_caller, digit_rows, purpose):
    caller = make_caller()
    body = {
        "inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": digit_rows[0].tolist()}],
        "parameters": {"purpose": purpose},
    }
    response = _post(client, "/v2/models/digits/infer", body, caller)
    assert response.status_code == 400, response.content
    row = _one_row(response)
    assert row.http_status == 400 and row.error_code == "malformed_request"


@pytest.mark.parametrize("purpose", HOSTILE_PURPOSES[:2])
def test_job_submission_refuses_unencodable_purpose_and_audits_it(client, digits, make_caller, digit_rows, purpose):
    caller = make_caller()
    body = {"model": "digits", "instances": digit_rows[:2].tolist(), "purpose": purpose}
    response = _post(client, "/v1/jobs", body, caller)
    assert_problem(response, 400, "malformed_request")
    assert _one_row(response).error_code == "malformed_request"


def test_nul_in_the_purpose_header_is_refused_and_audited(client, digits, make_caller, digit_rows):
    caller = make_caller()
    body = {"instances": digit_rows[:1].tolist()}
    response = _post(client, "/v1/models/digits/predict", body, caller, HTTP_X_PURPOSE="re\x00search")
    assert_problem(response, 400, "malformed_request")
    assert _one_row(response).http_status == 400


def test_nul_in_the_idempotency_key_is_refused_and_audited(client, digits, make_caller, digit_rows):
    caller = make_caller()
    body = {"model": "digits", "instances": digit_rows[:1].tolist(), "purpose": "research"}
    response = _post(client, "/v1/jobs", body, caller, HTTP_IDEMPOTENCY_KEY="a\x00b")
    assert_problem(response, 400, "malformed_request")
    assert _one_row(response).http_status == 400


@pytest.mark.parametrize("auth", ["invalid", "valid", "none"])
def test_nul_in_the_path_is_recorded_escaped(client, digits, make_caller, auth):
    caller = make_caller()
    headers = {"none": {}, "valid": caller.headers, "invalid": {"HTTP_AUTHORIZATION": "Bearer not-a-key"}}[auth]
    response = client.get("/v1/models/ab%00cd", **headers)
    assert response.status_code in (401, 404), response.content
    assert response.status_code != 503
    row = _one_row(response)
    assert row.path == "/v1/models/ab\\x00cd"
    assert row.http_status == response.status_code


def test_surrogate_escapes_in_the_path_are_recorded_escaped(client, make_caller):
    # %ED%A0%80 is the UTF-8 form of a surrogate: Django decodes the path leniently.
    response = client.get("/v1/models/ab%ED%A0%80cd%5C", HTTP_AUTHORIZATION="Bearer not-a-key")
    assert_problem(response, 401, "invalid_api_key")
    row = _one_row(response)
    assert "\x00" not in row.path and row.path.endswith("cd\\\\")


def test_the_writer_never_fails_on_content():
    """Whatever reaches the writer is stored: NULs and surrogates escaped, over-long text cut, NaN kept as text."""
    event = audit_event_record(
        event_type="request",
        purpose="re\x00\ud800",
        path="/x" * 400,
        method="GET\x00\x00\x00\x00\x00",
        client_ip="not an address",
        detail={"k\x00": ["v\ud800", float("nan")]},
        monitor_denials=["\ud800"],
    )
    stored = AuditEvent.objects.get(seq=event.seq)
    assert stored.purpose == "re\\x00\\ud800"
    assert len(stored.path) == 300 and stored.client_ip is None
    assert stored.detail == {"k\\x00": ["v\\ud800", "nan"]}
    assert stored.monitor_denials == ["\\ud800"]


@pytest.mark.parametrize("path", ["/v1/models/ab%00cd/predict", "/v2/models/ab%00cd/infer"])
def test_nul_in_a_model_name_is_a_missing_model(client, digits, make_caller, digit_rows, path):
    caller = make_caller()
    body = {"instances": digit_rows[:1].tolist(), "purpose": "research"}
    response = _post(client, path, body, caller)
    assert response.status_code == 404, response.content
    assert _one_row(response).path == path.replace("%00", "\\x00")


def test_nul_in_a_job_model_name_is_a_missing_model(client, digits, make_caller, digit_rows):
    caller = make_caller()
    body = {"model": "ab\x00cd", "instances": digit_rows[:1].tolist(), "purpose": "research"}
    response = _post(client, "/v1/jobs", body, caller)
    assert_problem(response, 404, "model_not_found")
    assert _one_row(response).http_status == 404
