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
import re
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


# -- fast row encoders (exports) ------------------------------------------------------
# An export writes tens of thousands of rows a second.  Building a dict per
# row, converting every value through a per-field function, the generic JSON
# encoder and ``csv.writer`` (about 30 µs for a 37-cell row by itself) cost
# about 90 µs of CPU a row (cProfile of a 200,000-row export).  These encoders
# produce the same bytes -- a ``csv.writer`` line of :func:`csv_cells`, and
# :func:`canonical_json` of the record plus one extra member -- straight from
# a row in field order, in one generated expression per row (as
# ``collections.namedtuple`` generates its class), with field kinds resolved
# once instead of per value and CSV quoting applied only to text cells.
#
# Input contract ("wire rows"): a sequence in field order where ``ts`` and
# ``uuid`` values are already canonical text, ints are ints (or decimal text),
# floats are floats, bools are bools, strings are strings, and ``json`` values
# are database JSON text (``json_as_text=True``) or decoded values.  ``None``
# is NULL.

# ``csv.writer``'s QUOTE_MINIMAL rule for the default dialect: a cell is quoted
# when it holds the delimiter, the quote character or a line-terminator
# character, and quotes inside are doubled.
_CSV_SPECIAL = re.compile('[",\r\n]').search


def csv_quote(text: str) -> str:
    """One cell as ``csv.writer`` (default dialect, QUOTE_MINIMAL) writes it."""
    if _CSV_SPECIAL(text) is None:
        return text
    return '"' + text.replace('"', '""') + '"'


def _memo(convert: Any, limit: int = 4096, longest: int = 512) -> Any:
    """``convert`` memoised for short, repeated database texts (``None`` passes to it).

    Most JSON members of request events repeat (``[]``, ``{}``, a prediction
    summary); decoding and re-encoding them would be the export's biggest
    cost.  The memo holds at most ``limit`` texts of at most ``longest``
    characters and is emptied when full, so memory stays flat.
    """
    memo: dict[str, str] = {}
    null = convert(None)

    def memoised(text: Any) -> str:
        if text is None:
            return null
        hit = memo.get(text)
        if hit is not None:
            return hit
        value = convert(text)
        if len(text) <= longest:
            if len(memo) >= limit:
                memo.clear()
            memo[text] = value
        return value

    return memoised


def _json_from_text(text: Any) -> str:
    return "null" if text is None else _ENCODER.encode(json.loads(text))


def _wire_csv_expression(kind: str, i: int) -> str:
    value = f"r[{i}]"
    base, nullable = kind.rstrip("?"), kind.endswith("?")
    if base == "json":
        return f"jc({value})"
    if base == "int":
        text = f"str({value})"
    elif base == "float":
        text = f"ft({value})"
    elif base == "bool":
        text = f'("true" if {value} else "false")'
    elif base == "str":
        # Four ``in`` tests cost half a regex search call (measured), and most cells pass them.
        clean = " and ".join(f"{c!r} not in {value}" for c in '",\r\n')
        text = f"({value} if {clean} else cq({value}))"
    else:  # ts, uuid: canonical text that never needs quoting
        text = value
    return f'("" if {value} is None else {text})' if nullable else text


def _wire_json_expression(kind: str, i: int) -> str:
    value = f"r[{i}]"
    base, nullable = kind.rstrip("?"), kind.endswith("?")
    if base == "json":
        return f"j({value})"
    if base == "int":
        text = f"str({value})"
    elif base == "float":
        text = f"ft({value})"
    elif base == "bool":
        text = f'("true" if {value} else "false")'
    else:
        text = f"es({value})"
    return f'("null" if {value} is None else {text})' if nullable else text


class RowEncoder:
    """CSV lines and canonical JSON lines of wire rows, byte-identical to the record-based path.

    ``csv_line(row, extra)`` equals what ``csv.writer`` writes for
    ``[*csv_cells(record), *extra]`` (``extra``: cells without delimiters,
    quotes or line breaks, already joined with commas); ``json_line(row,
    extra)`` equals ``canonical_json({**record, extra_member: value})`` where
    ``extra`` is the canonical JSON text of ``value``.
    """

    def __init__(self, *, json_as_text: bool, extra_member: str, version: int = CANONICAL_VERSION):
        kinds = list(FIELD_KINDS_BY_VERSION[version].items())
        if json_as_text:
            to_json = _memo(_json_from_text)
            to_cell = _memo(lambda text: csv_quote(_json_from_text(text)))
        else:
            to_json = _ENCODER.encode

            def to_cell(value: Any) -> str:
                return csv_quote(_ENCODER.encode(value))

        namespace = {
            "j": to_json,
            "jc": to_cell,
            "ft": _float_text,
            "es": json.encoder.encode_basestring_ascii,
            "cq": csv_quote,
        }
        # One join of a tuple: chained ``+`` built 36 intermediate strings a row (3x slower, measured).
        cells = ", ".join(_wire_csv_expression(kind, i) for i, (_, kind) in enumerate(kinds))
        members = [(name, _wire_json_expression(kind, i)) for i, (name, kind) in enumerate(kinds)]
        members.append((extra_member, "x"))
        parts = []
        for n, (name, expression) in enumerate(sorted(members)):
            parts.append(repr(("{" if n == 0 else ",") + _ENCODER.encode(name) + ":"))
            parts.append(expression)
        parts.append(repr("}"))
        source = (
            f"def csv_line(r, x):\n    return ','.join(({cells}, x)) + '\\r\\n'\n\n"
            f"def json_line(r, x):\n    return ''.join(({', '.join(parts)}))\n"
        )
        exec(compile(source, f"<RowEncoder v{version}>", "exec"), namespace)  # noqa: S102 (generated from constants)
        self.csv_line = namespace["csv_line"]
        self.json_line = namespace["json_line"]
