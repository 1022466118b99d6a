"""The canonical form of an audit event: what is hashed, exported and re-verified.

Django-free, so the offline export verifier can import it without a database
or settings.  A record is a plain dict over an explicit, versioned field list
(never "whatever the model has today": adding a model field must not change
the hashes of blocks sealed before it).  Values are normalised to JSON types:
timestamps become UTC ISO-8601 strings with microseconds and a ``Z``, UUIDs
become strings, and JSON members stay as the database returned them.  The
bytes that get hashed are that dict as JSON with sorted keys and no
whitespace, ASCII only, so any language can reproduce them.

CSV exports flatten a record into text cells; :func:`csv_cells` and
:func:`record_from_csv` are exact inverses for every value the database can
hold, which is what lets a verifier recompute leaf hashes from a CSV file.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

CANONICAL_VERSION = 1

# Field name -> kind.  Order is the CSV column order; the hash does not depend
# on it (keys are sorted), but the *set* of fields is fixed per version.
_FIELDS_V1: tuple[tuple[str, str], ...] = (
    ("seq", "int"),
    ("event_id", "uuid"),
    ("occurred_at", "ts"),
    ("recorded_at", "ts"),
    ("event_type", "str"),
    ("action", "str"),
    ("request_id", "str"),
    ("actor", "str"),
    ("tenant_id", "int?"),
    ("tenant_slug", "str"),
    ("key_prefix", "str"),
    ("method", "str"),
    ("path", "str"),
    ("http_status", "int?"),
    ("latency_ms", "float?"),
    ("client_ip", "str?"),
    ("model_name", "str"),
    ("model_version", "int?"),
    ("model_sha256", "str"),
    ("decision", "str"),
    ("rule_id", "str"),
    ("reason_code", "str"),
    ("policy_versions", "str"),
    ("monitor_denials", "json"),
    ("purpose", "str"),
    ("region", "str"),
    ("input_digest", "str"),
    ("units", "int"),
    ("prediction", "json"),
    ("needs_review", "bool"),
    ("quota_fail_open", "bool"),
    ("error_code", "str"),
    ("raw_input", "json"),
    ("detail", "json"),
)

FIELD_KINDS_BY_VERSION: dict[int, dict[str, str]] = {1: dict(_FIELDS_V1)}
FIELDS_BY_VERSION: dict[int, tuple[str, ...]] = {1: tuple(name for name, _ in _FIELDS_V1)}
EVENT_FIELDS: tuple[str, ...] = FIELDS_BY_VERSION[CANONICAL_VERSION]


class CanonicalFormError(ValueError):
    """A value that cannot be represented (or parsed back) canonically."""


def timestamp_text(value: datetime) -> str:
    """UTC ISO-8601 with microseconds and ``Z``: one spelling per instant."""
    if value.tzinfo is None:
        raise CanonicalFormError(f"naive datetime {value!r}: audit timestamps are always UTC-aware")
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_timestamp(text: str) -> datetime:
    """Inverse of :func:`timestamp_text`."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


# Per-kind converters from database values to canonical JSON values.  They run
# for every field of every sealed, verified or exported event (a million rows
# is tens of millions of calls), so each is one function whose fast path is a
# type check returning the value untouched; nullable kinds get their own
# function rather than a wrapper around the required one.
class _Null(CanonicalFormError):
    """A required field was null (the caller adds the field name)."""


def _required(convert: Any) -> Any:
    def required(value: Any) -> Any:
        if value is None:
            raise _Null("null value for a non-null field")
        return convert(value)

    return required


def _ts(value: Any) -> str:
    return timestamp_text(value) if isinstance(value, datetime) else str(value)


def _uuid(value: Any) -> str:
    return str(value) if isinstance(value, uuid.UUID) else str(uuid.UUID(str(value)))


def _int(value: Any) -> Any:
    if value.__class__ is int or value is None:
        return value
    return int(value)


def _float(value: Any) -> Any:
    if value.__class__ is float or value is None:
        return value
    return float(value)


def _bool(value: Any) -> bool:
    if value.__class__ is bool:
        return value
    if value is None:
        raise _Null("null value for a non-null field")
    return bool(value)


def _str(value: Any) -> Any:
    if value.__class__ is str or value is None:
        return value
    return str(value)


def _int_required(value: Any) -> int:
    if value.__class__ is int:
        return value
    if value is None:
        raise _Null("null value for a non-null field")
    return int(value)


def _str_required(value: Any) -> str:
    if value.__class__ is str:
        return value
    if value is None:
        raise _Null("null value for a non-null field")
    return str(value)


def _json(value: Any) -> Any:
    return value  # already JSON types, exactly as the database returned them


_CONVERTERS = {
    "int": _int_required,
    "int?": _int,
    "float?": _float,
    "str": _str_required,
    "str?": _str,
    "bool": _bool,
    "ts": _required(_ts),
    "uuid": _required(_uuid),
    "json": _json,
}

_CONVERTERS_BY_VERSION: dict[int, tuple[tuple[str, Any], ...]] = {
    version: tuple((name, _CONVERTERS[kind]) for name, kind in kinds.items())
    for version, kinds in FIELD_KINDS_BY_VERSION.items()
}


def canonical_event(values: Mapping[str, Any] | Sequence[Any], *, version: int = CANONICAL_VERSION) -> dict[str, Any]:
    """The canonical record of one event, from a mapping or a row in field order."""
    converters = _CONVERTERS_BY_VERSION[version]
    if isinstance(values, Mapping):
        values = [values[name] for name, _ in converters]
    elif len(values) != len(converters):
        raise CanonicalFormError(f"row has {len(values)} values, version {version} has {len(converters)} fields")
    try:
        return {name: convert(value) for (name, convert), value in zip(converters, values, strict=True)}
    except _Null:
        nulls = [name for (name, _), value in zip(converters, values, strict=True) if value is None]
        kinds = FIELD_KINDS_BY_VERSION[version]
        raise CanonicalFormError(
            f"null value in non-null field(s) {[n for n in nulls if not kinds[n].endswith('?') and kinds[n] != 'json']}"
        ) from None


# allow_nan keeps non-finite floats (possible in a latency column) representable
# instead of making a block unsealable; Python's json reads the tokens back.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, ASCII: the one JSON spelling used for hashing and signing."""
    return _ENCODER.encode(value)


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """The bytes of a canonical record that become a Merkle leaf."""
    return canonical_json(record).encode("ascii")


def record_from_json(obj: Mapping[str, Any], *, version: int = CANONICAL_VERSION) -> dict[str, Any]:
    """Pick a version's fields out of a parsed JSON Lines row (extra members are ignored)."""
    fields = FIELDS_BY_VERSION[version]
    missing = [name for name in fields if name not in obj]
    if missing:
        raise CanonicalFormError(f"row lacks fields {missing}")
    return {name: obj[name] for name in fields}


def _float_text(value: float) -> str:
    if math.isfinite(value):
        return repr(value)
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _cell_text(value: Any) -> str:
    return value if value.__class__ is str else str(value)


def _cell_bool(value: Any) -> str:
    return "true" if value else "false"


def _cell_encoder(kind: str) -> Any:
    base = kind.rstrip("?")
    if base == "json":
        return canonical_json
    encode = {"bool": _cell_bool, "float": _float_text}.get(base, _cell_text)
    if kind.endswith("?"):
        return lambda value: "" if value is None else encode(value)
    return encode


_CELL_ENCODERS_BY_VERSION: dict[int, tuple[tuple[str, Any], ...]] = {
    version: tuple((name, _cell_encoder(kind)) for name, kind in kinds.items())
    for version, kinds in FIELD_KINDS_BY_VERSION.items()
}


def csv_cells(record: Mapping[str, Any], *, version: int = CANONICAL_VERSION) -> list[str]:
    """A canonical record as CSV cells, in field order (inverse of :func:`record_from_csv`)."""
    return [encode(record[name]) for name, encode in _CELL_ENCODERS_BY_VERSION[version]]


def record_from_csv(row: Mapping[str, str], *, version: int = CANONICAL_VERSION) -> dict[str, Any]:
    """Parse CSV cells (keyed by column name) back into the canonical record."""
    record: dict[str, Any] = {}
    for name, kind in FIELD_KINDS_BY_VERSION[version].items():
        if name not in row or row[name] is None:
            raise CanonicalFormError(f"row lacks column {name!r}")
        text = row[name]
        base, nullable = kind.rstrip("?"), kind.endswith("?")
        try:
            if base == "json":
                record[name] = json.loads(text)
            elif nullable and text == "":
                record[name] = None
            elif base == "int":
                record[name] = int(text)
            elif base == "float":
                record[name] = float(text)
            elif base == "bool":
                if text not in ("true", "false"):
                    raise CanonicalFormError(f"{name}: {text!r} is not true/false")
                record[name] = text == "true"
            else:
                record[name] = text
        except ValueError as exc:
            raise CanonicalFormError(f"{name}: cannot parse {text!r}: {exc}") from exc
    return record
