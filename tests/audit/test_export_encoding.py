"""The fast export encoding writes exactly the bytes of the previous, record-based implementation.

The reference below is the export's row loop as it was before the speed-up
(``canonical_event`` per row, ``csv.writer`` / ``canonical_json`` of a dict),
kept here verbatim so that any drift in the generated encoders shows up as a
byte difference, on both backends, over hostile values.
"""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from audit.canonical import (
    EVENT_FIELDS,
    FIELD_KINDS_BY_VERSION,
    RowEncoder,
    canonical_event,
    canonical_json,
    csv_cells,
    csv_quote,
)
from audit.selectors import ExportFilters, audit_events_filtered, audit_sealed_through
from audit.services import audit_export_write, audit_seal
from audit.services.export import _BlockCursor, _encode_chunks, _ExportState, _merkle_position, _pages
from audit.verify_export import JSONL_MERKLE_MEMBER, MERKLE_COLUMNS, verify_export

from .conftest import trusted_pem
from .factories import AuditEventFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

HOSTILE = [
    "",
    "plain",
    'quote " inside',
    "comma, inside",
    "line\nbreak",
    "carriage\rreturn",
    "crlf\r\n",
    "tab\there",
    "unicode é ü 漢字 😀",
    "\u2028 line separator",
    "back\\slash",
    '""',
    " leading space",
]


def _reference_chunks(*, filters: ExportFilters, fmt: str, upper_seq: int, state: _ExportState) -> bytes:
    """The export's encoding loop before the speed-up (same pages, same Merkle positions)."""
    filtered = audit_events_filtered(filters=filters)
    cursor = _BlockCursor(filtered.filter(seq__lte=upper_seq), audit_sealed_through(), state)
    buffer = io.StringIO()
    writer = csv.writer(buffer) if fmt == "csv" else None
    if writer is not None:
        writer.writerow([*EVENT_FIELDS, *MERKLE_COLUMNS])
    for chunk in _pages(filtered, upper_seq, 4):
        for row in chunk:
            record = canonical_event(row)
            position = _merkle_position(cursor, record["seq"])
            if writer is not None:
                merkle_cells = ["", "", ""]
                if position is not None:
                    merkle_cells = [str(position[0]), str(position[1]), " ".join(position[2])]
                writer.writerow([*csv_cells(record), *merkle_cells])
            else:
                merkle = None
                if position is not None:
                    merkle = {"block": position[0], "index": position[1], "proof": position[2]}
                buffer.write(canonical_json({**record, JSONL_MERKLE_MEMBER: merkle}))
                buffer.write("\n")
    return buffer.getvalue().encode("utf-8")


@pytest.fixture
def hostile(db) -> list:
    """Events whose every text, number and JSON member is awkward to encode, partly sealed."""
    rnd = random.Random(20)
    when = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)  # whole seconds: no fraction in the database's text
    rows = []
    for i in range(23):
        text = HOSTILE[i % len(HOSTILE)]
        rows.append(
            AuditEventFactory(
                occurred_at=when + timedelta(microseconds=rnd.choice([0, 1, 10, 999999, 120000])),
                action=text[:64],
                actor=text,
                tenant_slug="acme" if i % 3 else "globex",
                tenant_id=None if i % 4 == 0 else i,
                policy_versions="baseline@3,tenant:acme@2" if i % 2 else text,
                http_status=None if i % 5 == 0 else 200,
                latency_ms=[None, 100.0, 1e-7, 1e16, 2.5, 0.1 + 0.2, float("inf"), -0.0][i % 8],
                client_ip=None if i % 6 == 0 else ("::1" if i % 2 else "10.0.0.7"),
                model_version=None if i % 7 == 0 else i,
                units=-3 if i % 9 == 0 else 1,
                needs_review=bool(i % 2),
                monitor_denials=[] if i % 2 else [{"rule": text, "n": 1.0}],
                prediction=None if i % 3 == 0 else [{"label": i % 10, "top_probability": 0.93, "note": text}],
                raw_input=None if i % 2 else {"z": [1, 2.5, None, True], "a": text, "é": "ü"},
                detail={} if i % 4 else {"nested": {"b": text, "a": [1e300, -1, "x"]}, "i": i},
            )
        )
    audit_seal()
    rows.append(AuditEventFactory(actor='after the seal, "unsealed"', detail={"x": ","}))
    return rows


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("filters", [{}, {"tenant": "acme"}], ids=["all", "tenant"])
def test_bytes_are_identical_to_the_previous_implementation(settings, hostile, fmt, filters):
    settings.AUDIT_EXPORT_PAGE_SIZE = 4
    upper = hostile[-1].seq
    expected_state, state = _ExportState(), _ExportState()
    expected = _reference_chunks(filters=ExportFilters(**filters), fmt=fmt, upper_seq=upper, state=expected_state)
    actual = b"".join(
        _encode_chunks(filters=ExportFilters(**filters), fmt=fmt, upper_seq=upper, state=state, on_progress=None)
    )
    assert actual == expected
    assert state.blocks == expected_state.blocks and state.unsealed_rows == expected_state.unsealed_rows


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_hostile_export_verifies_offline(tmp_path, hostile, fmt):
    path = tmp_path / f"export.{fmt}"
    with path.open("wb") as fh:
        manifest = audit_export_write(
            filters=ExportFilters(tenant="acme"), format=fmt, stream=fh, actor="staff:carol", file_name=path.name
        )
    manifest_path = Path(f"{path}.manifest.json")
    manifest_path.write_text(canonical_json(manifest))
    outcome = verify_export(path, manifest_path, public_key_pem=trusted_pem())
    assert outcome.ok, outcome.problems
    assert outcome.rows == manifest["row_count"] > 0


def _random_record(rnd: random.Random, n: int) -> dict:
    alphabet = ["a", ",", '"', "\r", "\n", " ", "é", "\t", "\\", "\u2028", "'", "😀"]

    def text() -> str:
        return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 6)))

    record = {}
    for name, kind in FIELD_KINDS_BY_VERSION[1].items():
        base = kind.rstrip("?")
        if kind.endswith("?") and rnd.random() < 0.3:
            value = None
        elif base == "int":
            value = rnd.choice([0, -5, 10**12, 7])
        elif base == "float":
            value = rnd.choice([0.1, 100.0, 1e-7, 1e16, float("nan"), float("inf"), float("-inf"), -0.0])
        elif base == "bool":
            value = rnd.random() < 0.5
        elif base == "ts":
            value = "2026-01-01T00:00:00.000000Z"
        elif base == "uuid":
            value = str(uuid.UUID(int=n))
        elif base == "json":
            value = rnd.choice([None, [], {}, {"b": text(), "a": [1, 2.5, text()]}, text(), 1.0, [1, 2]])
        else:
            value = text()
        record[name] = value
    return record


@pytest.mark.parametrize("json_as_text", [False, True])
def test_generated_encoders_match_csv_writer_and_canonical_json(json_as_text):
    """A differential fuzz of the encoders alone: random awkward values, 3,000 records."""
    rnd = random.Random(7)
    encoder = RowEncoder(json_as_text=json_as_text, extra_member=JSONL_MERKLE_MEMBER)
    kinds = FIELD_KINDS_BY_VERSION[1]
    for n in range(3000):
        record = _random_record(rnd, n)
        row = [
            json.dumps(record[name])
            if json_as_text and kinds[name] == "json" and record[name] is not None
            else record[name]
            for name in EVENT_FIELDS
        ]
        buffer = io.StringIO()
        csv.writer(buffer).writerow([*csv_cells(record), "3", "4", "ab cd"])
        assert encoder.csv_line(row, "3,4,ab cd") == buffer.getvalue()
        assert encoder.json_line(row, "null") == canonical_json({**record, JSONL_MERKLE_MEMBER: None})


@pytest.mark.parametrize("text", HOSTILE)
def test_csv_quote_is_csv_writer(text):
    buffer = io.StringIO()
    csv.writer(buffer).writerow([text, "x"])
    assert f"{csv_quote(text)},x\r\n" == buffer.getvalue()
