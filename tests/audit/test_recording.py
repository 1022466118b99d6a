"""Recording: one event per request outcome, change records, secrets kept out, failures surfaced."""

from __future__ import annotations

import psycopg
import pytest
from django.db import OperationalError, connection
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from audit.canonical import canonical_bytes, canonical_event
from audit.errors import AuditUnavailable
from audit.models import AuditEvent
from audit.services import audit_change_record, audit_event_record, audit_input_digest

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

RAW_KEY = "maas_live_3f9c2a_Zx8QwErTyUiOpAsDfGhJkL0123456789abcdef"
RAW_INPUT = b'{"instances": [[0.123456789, 0.987654321, 0.555555555]]}'

# (status, error_code, decision, units): what the pipeline records for each outcome.
OUTCOMES = [
    pytest.param(200, "", "allow", 1, id="served"),
    pytest.param(400, "invalid_input", "allow", 0, id="400-invalid-input"),
    pytest.param(401, "invalid_api_key", "", 0, id="401-bad-key"),
    pytest.param(403, "policy_denied", "deny", 0, id="403-policy"),
    pytest.param(429, "quota_exceeded", "allow", 0, id="429-quota"),
    pytest.param(500, "internal_error", "allow", 0, id="500"),
    pytest.param(503, "model_unavailable", "allow", 0, id="503-model"),
]


def _request_fields(status: int, error_code: str, decision: str, units: int) -> dict:
    authenticated = status != 401
    fields = {
        "action": "predict",
        "request_id": f"req-{status}-0001",
        "method": "POST",
        "path": "/v1/models/digits/predict",
        "http_status": status,
        "latency_ms": 4.5,
        "client_ip": "203.0.113.9",
        "purpose": "fraud-screening",
        "input_digest": audit_input_digest(payload=RAW_INPUT),
        "units": units,
        "error_code": error_code,
    }
    if authenticated:
        fields.update(
            actor="tenant:acme/key:mk_ab12", tenant_id=7, tenant_slug="acme", key_prefix="mk_ab12", region="eu"
        )
        fields.update(model_name="digits", model_version=3, model_sha256="cd" * 32)
    if decision:
        fields.update(
            decision=decision,
            rule_id="tier.high" if decision == "deny" else "baseline.allow",
            reason_code="high_risk" if decision == "deny" else "",
            policy_versions="baseline@3,tenant:acme@1",
        )
    return fields


@pytest.mark.parametrize(("status", "error_code", "decision", "units"), OUTCOMES)
def test_each_request_outcome_is_recorded_with_its_fields(status, error_code, decision, units):
    before = timezone.now()
    event = audit_event_record(
        event_type=AuditEvent.Type.REQUEST, **_request_fields(status, error_code, decision, units)
    )
    stored = AuditEvent.objects.get(seq=event.seq)
    assert stored.http_status == status
    assert stored.error_code == error_code
    assert stored.decision == decision
    assert stored.units == units
    assert stored.occurred_at >= before
    assert stored.recorded_at is not None
    assert stored.request_id == f"req-{status}-0001"
    assert stored.client_ip == "203.0.113.9"
    if status == 401:
        assert stored.tenant_slug == "" and stored.tenant_id is None and stored.model_name == ""
    else:
        assert (stored.tenant_slug, stored.key_prefix, stored.model_version) == ("acme", "mk_ab12", 3)
    if decision == "deny":
        assert (stored.rule_id, stored.reason_code) == ("tier.high", "high_risk")
        assert stored.policy_versions == "baseline@3,tenant:acme@1"


def test_returned_event_matches_the_stored_row():
    event = audit_event_record(
        event_type=AuditEvent.Type.REQUEST,
        **_request_fields(200, "", "allow", 1),
        prediction={"labels": [3], "top_probabilities": [0.25]},
        monitor_denials=[{"rule_id": "purpose", "reason": "monitor"}],
        detail={"nested": {"b": [1, 2.5, None]}},
    )
    stored = AuditEvent.objects.get(seq=event.seq)
    for field in AuditEvent._meta.concrete_fields:
        assert getattr(event, field.attname) == getattr(stored, field.attname), field.name
    assert not event._state.adding


def test_sequence_is_monotonic():
    seqs = [audit_event_record(event_type=AuditEvent.Type.REQUEST, http_status=200).seq for _ in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5


def test_unknown_field_is_a_programming_error():
    with pytest.raises(TypeError, match="raw_api_key"):
        audit_event_record(event_type=AuditEvent.Type.REQUEST, raw_api_key=RAW_KEY)


def test_neither_raw_key_nor_raw_input_reaches_the_canonical_record():
    event = audit_event_record(event_type=AuditEvent.Type.REQUEST, **_request_fields(200, "", "allow", 1))
    change = audit_change_record(
        actor="command:create_api_key",
        action="api_key.create",
        target="api_key:12",
        after={"prefix": "mk_ab12", "raw_key": RAW_KEY, "key_hash": "ff" * 32, "scopes": ["predict"]},
        tenant_slug="acme",
        event_type=AuditEvent.Type.KEY_LIFECYCLE,
    )
    for stored in AuditEvent.objects.filter(seq__in=[event.seq, change.seq]):
        values = {f: getattr(stored, f) for f in (f.name for f in AuditEvent._meta.concrete_fields)}
        data = canonical_bytes(canonical_event(values)).decode()
        assert RAW_KEY not in data
        assert RAW_KEY.split("_")[-1] not in data
        assert "0.123456789" not in data and "instances" not in data
    stored_change = AuditEvent.objects.get(seq=change.seq)
    assert stored_change.detail["after"]["raw_key"] == "[redacted]"
    assert stored_change.detail["after"]["key_hash"] == "[redacted]"
    assert stored_change.detail["after"]["prefix"] == "mk_ab12"


def test_input_digest_is_keyed_and_stable():
    digest = audit_input_digest(payload=RAW_INPUT)
    assert digest == audit_input_digest(payload=RAW_INPUT)
    assert digest != audit_input_digest(payload=RAW_INPUT + b" ")
    assert len(digest) == 64 and RAW_INPUT.decode() not in digest


def test_change_record_keeps_before_and_after():
    event = audit_change_record(
        actor="staff:alice",
        action="plan.update",
        target="plan:pro",
        before={"rate": 5},
        after={"rate": 10},
        extra={"note": "raise"},
    )
    stored = AuditEvent.objects.get(seq=event.seq)  # the row as written, not the object handed back
    assert stored.event_type == AuditEvent.Type.CONFIG_CHANGE
    assert stored.detail == {"target": "plan:pro", "before": {"rate": 5}, "after": {"rate": 10}, "note": "raise"}
    assert stored.actor == "staff:alice"
    assert stored.action == "plan.update"


def test_database_failure_raises_audit_unavailable(monkeypatch):
    def broken(self, sql, params=None, **kwargs):
        raise OperationalError("database is locked")

    def broken_psycopg(self, query, params=None, **kwargs):
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    # SQLite goes through Django's cursor, PostgreSQL through a server-binding psycopg cursor.
    monkeypatch.setattr(CursorWrapper, "execute", broken)
    monkeypatch.setattr(psycopg.Cursor, "execute", broken_psycopg)
    with pytest.raises(AuditUnavailable) as excinfo:
        audit_event_record(event_type=AuditEvent.Type.REQUEST, http_status=200)
    monkeypatch.undo()
    assert not AuditEvent.objects.exists()
    assert excinfo.value.status == 503
    assert excinfo.value.code == "audit_unavailable"


def test_insert_parameters_are_what_the_orm_would_store():
    from audit.services import recording

    fields = _request_fields(200, "", "allow", 1) | {
        "occurred_at": timezone.now(),
        "client_ip": "2001:db8::1",
        "prediction": [{"label": 7, "top_probability": 0.99, "needs_review": False}],
        "monitor_denials": ["r1"],
        "latency_ms": 4.5,
        "needs_review": True,
    }
    statement = recording._InsertStatement("default")
    values = {recording._ATTNAMES[name]: value for name, value in fields.items()} | {"event_type": "request"}
    event = AuditEvent(**values)
    values["event_id"] = event.event_id
    fast = statement.params(values, connection)
    orm = [f.get_db_prep_save(getattr(event, f.attname), connection) for f in statement.fields]

    def plain(value):  # JSON adapters and the like compare by what they wrap
        return getattr(value, "obj", value)

    assert [plain(v) for v in fast] == [plain(v) for v in orm]
    assert [type(v) for v in fast] == [type(v) for v in orm]


def test_request_record_returns_the_stored_sequence_number():
    from audit.services import audit_request_record

    seq = audit_request_record(**_request_fields(200, "", "allow", 1))
    stored = AuditEvent.objects.get(seq=seq)
    assert stored.event_type == AuditEvent.Type.REQUEST
    assert stored.request_id == "req-200-0001"
    assert stored.units == 1
