"""The canonical record: stable bytes, UTC timestamps, exact CSV round trips, and the model's fields."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit import canonical
from audit.models import AuditEvent


def _values(**overrides):
    values = {name: "" for name in canonical.EVENT_FIELDS}
    values.update(
        seq=7,
        event_id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        recorded_at=datetime(2026, 1, 2, 3, 4, 5, 7000, tzinfo=UTC),
        tenant_id=None,
        http_status=None,
        latency_ms=None,
        client_ip=None,
        model_version=None,
        monitor_denials=[],
        units=0,
        prediction=None,
        needs_review=False,
        quota_fail_open=False,
        raw_input=None,
        detail={},
    )
    values.update(overrides)
    return values


def test_field_list_covers_every_model_field():
    model_fields = {f.name for f in AuditEvent._meta.concrete_fields}
    assert set(canonical.EVENT_FIELDS) == model_fields


def test_bytes_are_sorted_compact_ascii_json():
    record = canonical.canonical_event(_values(detail={"b": 1, "a": "é"}))
    data = canonical.canonical_bytes(record)
    assert data.startswith(b'{"action":""')
    assert b"\\u00e9" in data
    assert b" " not in data
    assert canonical.canonical_bytes(dict(reversed(list(record.items())))) == data


def test_timestamps_are_utc_with_microseconds():
    plus_two = timezone(timedelta(hours=2))
    record = canonical.canonical_event(_values(occurred_at=datetime(2026, 1, 2, 5, 4, 5, tzinfo=plus_two)))
    assert record["occurred_at"] == "2026-01-02T03:04:05.000000Z"
    assert canonical.parse_timestamp(record["occurred_at"]) == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_naive_timestamps_are_refused():
    with pytest.raises(canonical.CanonicalFormError):
        canonical.canonical_event(_values(occurred_at=datetime(2026, 1, 2)))


def test_row_and_mapping_give_the_same_record():
    values = _values(tenant_slug="acme", http_status=429)
    row = [values[name] for name in canonical.EVENT_FIELDS]
    assert canonical.canonical_event(row) == canonical.canonical_event(values)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(
    detail=st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    prediction=json_values,
    latency=st.none() | st.floats(allow_nan=True, allow_infinity=True),
    status=st.none() | st.integers(min_value=100, max_value=599),
    text=st.text(),
    ip=st.none() | st.just("10.0.0.1") | st.just("2001:db8::1"),
)
def test_csv_cells_round_trip_exactly(detail, prediction, latency, status, text, ip):
    record = canonical.canonical_event(
        _values(detail=detail, prediction=prediction, latency_ms=latency, http_status=status, path=text, client_ip=ip)
    )
    header = list(canonical.EVENT_FIELDS)
    parsed = canonical.record_from_csv(dict(zip(header, canonical.csv_cells(record), strict=True)))
    assert canonical.canonical_bytes(parsed) == canonical.canonical_bytes(record)


def test_csv_rejects_bad_cells():
    record = canonical.canonical_event(_values())
    cells = dict(zip(canonical.EVENT_FIELDS, canonical.csv_cells(record), strict=True))
    with pytest.raises(canonical.CanonicalFormError):
        canonical.record_from_csv({**cells, "needs_review": "maybe"})
    with pytest.raises(canonical.CanonicalFormError):
        canonical.record_from_csv({**cells, "seq": "seven"})
    del cells["detail"]
    with pytest.raises(canonical.CanonicalFormError):
        canonical.record_from_csv(cells)
