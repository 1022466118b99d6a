"""Writes to the audit trail.

``audit_event_record`` is the single entry point every other app uses.  The
per-request write is exactly one INSERT (no read-before-write, no chain hash
computed inline): sealing happens later in bulk, so request throughput never
depends on it.  A failure to store raises :class:`AuditUnavailable` so that
the caller answers 503 instead of serving an unrecorded response.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Mapping
from datetime import UTC
from typing import Any

import numpy as np
import psycopg
from django.conf import settings
from django.db import DatabaseError, connections, models, router
from django.utils import timezone

from audit.errors import AuditUnavailable
from audit.models import AuditEvent
from core.sanitize import text_storable

logger = logging.getLogger("policy.audit")

# seq and event_id are assigned on insert, recorded_at by the database.
_FIELDS = {f.name for f in AuditEvent._meta.concrete_fields} - {"seq", "event_id", "recorded_at"}
_ATTNAMES = {f.name: f.attname for f in AuditEvent._meta.concrete_fields}

# Names of members that must never reach the trail in clear (OWASP ASVS V16:
# no secrets in logs).  Change records are built from model dicts by many
# callers, so the redaction is a net under all of them.
_SECRET_NAME = re.compile(
    r"(^|_)(secret|password|passwd|raw_key|api_key|key_hash|token|pepper|private_key|signing_key)s?$",
    re.IGNORECASE,
)
REDACTED = "[redacted]"


def audit_input_payload(feeds: Mapping[str, np.ndarray]) -> bytes:
    """The bytes an input digest covers: every input, in signature order.

    A single input is its bytes alone (so the digests of one-input models are
    what they always were); several inputs are each framed by name, type and
    shape, so no two different requests can produce the same bytes.
    """
    arrays = list(feeds.items())
    if len(arrays) == 1:
        return np.ascontiguousarray(arrays[0][1]).tobytes()
    parts: list[bytes] = []
    for name, array in arrays:
        parts.append(f"{name}|{array.dtype.str}|{list(array.shape)}|".encode())
        parts.append(np.ascontiguousarray(array).tobytes())
    return b"".join(parts)


def audit_input_digest(*, payload: bytes) -> str:
    """Keyed digest of a request's inputs: proves what was sent without keeping it (PIPL)."""
    return hmac.new(settings.AUDIT_INPUT_DIGEST_KEY.encode(), payload, hashlib.sha256).hexdigest()


# Field classes whose ``get_db_prep_save`` returns a value of exactly this type
# unchanged on every backend (``to_python``/``float()`` of itself); ``None``
# passes through all of them.  Everything else goes through the field's own
# method: integers, for one, become typed ``Int2``/``Int4``/``Int8`` adapters
# on PostgreSQL.
_PASS_THROUGH: dict[type[models.Field], type] = {
    models.CharField: str,
    models.BooleanField: bool,
    models.FloatField: float,
}


class _InsertStatement:
    """The event INSERT, compiled once per database alias instead of once per request.

    Django's ``Model.save()`` rebuilds and recompiles a 34-column INSERT on
    every call, which measured about three quarters of the per-request audit
    cost.  Values are what each field's ``get_db_prep_save`` would produce
    (plain strings, bools and floats are passed as they are, which is what
    that method returns for them), so what is stored is exactly what the ORM
    would store; ``seq`` and the database-set ``recorded_at`` come back
    through ``RETURNING``.  (No ``pre_save``/``post_save`` signals are sent:
    nothing may hook into the audit write.)

    On PostgreSQL the statement is sent with server-side binding as a
    prepared statement on the connection Django manages: after the first
    call each INSERT is one Bind/Execute message, one round trip, without
    client-side quoting of 34 literals.
    """

    def __init__(self, alias: str):
        connection = connections[alias]
        meta = AuditEvent._meta
        self.fields = [f for f in meta.concrete_fields if f.name not in ("seq", "recorded_at")]
        self.plan = [(f, f.attname, _PASS_THROUGH.get(type(f))) for f in self.fields]
        quote = connection.ops.quote_name
        self.sql = (
            f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in self.fields)}) "
            f"VALUES ({', '.join(['%s'] * len(self.fields))}) "
            f"RETURNING {quote(meta.pk.column)}, {quote(meta.get_field('recorded_at').column)}"
        )
        self.recorded_at = meta.get_field("recorded_at")
        self.server_side = connection.vendor == "postgresql"

    def params(self, values: dict[str, Any], connection: Any) -> list[Any]:
        """The INSERT's parameters, as ``get_db_prep_save`` of each field gives them.

        ``values`` maps attribute names to values; absent ones take the
        field's default, as ``AuditEvent(**values)`` would.
        """
        params = []
        for field, attname, plain in self.plan:
            value = values[attname] if attname in values else field.get_default()
            if value is None or (plain is not None and type(value) is plain):
                params.append(value)
            else:
                params.append(field.get_db_prep_save(value, connection))
        return params

    def insert(self, values: dict[str, Any], alias: str) -> tuple[int, Any]:
        """Run the INSERT; return the ``seq`` and ``recorded_at`` the database assigned."""
        connection = connections[alias]
        params = self.params(values, connection)
        if self.server_side:
            seq, recorded_at = self._execute_prepared(connection, params)
        else:
            with connection.cursor() as cursor:
                cursor.execute(self.sql, params)
                seq, recorded_at = cursor.fetchone()
        recorded_at = self.recorded_at.to_python(recorded_at)
        if timezone.is_naive(recorded_at):
            recorded_at = timezone.make_aware(recorded_at, UTC)
        return seq, recorded_at

    def _execute_prepared(self, connection: Any, params: list[Any]) -> tuple[int, Any]:
        # The same steps as ``connection.cursor()`` and its wrapper's execute
        # (health check, connect, broken-transaction check, error translation),
        # but with a server-binding cursor: Django's psycopg cursors bind client-side.
        connection.close_if_health_check_failed()
        connection.ensure_connection()
        connection.validate_no_broken_transaction()
        started = time.monotonic()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(self.sql, params, prepare=True)
            row = cursor.fetchone()
        if connection.queries_logged:
            # Keeps DEBUG's query log and the tests' query counters truthful.
            connection.queries_log.append(
                {"sql": f"{self.sql} -- audit event", "time": f"{time.monotonic() - started:.3f}"}
            )
        return row


_statements: dict[str, _InsertStatement] = {}

_CHAR_LIMITS = {f.attname: f.max_length for f in AuditEvent._meta.concrete_fields if isinstance(f, models.CharField)}
_JSON_FIELDS = {f.attname for f in AuditEvent._meta.concrete_fields if isinstance(f, models.JSONField)}
_IP_FIELDS = {f.attname for f in AuditEvent._meta.concrete_fields if isinstance(f, models.GenericIPAddressField)}


# What json.dumps writes for content PostgreSQL's jsonb or a UTF-8 encoder refuses: an escaped NUL,
# an escaped surrogate, a non-finite float.  (A false positive only costs the walk below.)
_JSON_UNSAFE = re.compile(r"\\u0000|\\ud[89a-f]|NaN|Infinity")


def _json_walk(value: Any) -> Any:
    if isinstance(value, str):
        return text_storable(value)
    if isinstance(value, dict):
        return {(text_storable(k) if isinstance(k, str) else k): _json_walk(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_walk(item) for item in value]
    if type(value) is float and not math.isfinite(value):
        return str(value)
    return value


def _json_storable(value: Any) -> Any:
    """``value`` with every string (keys too) storable and non-finite floats as strings (jsonb refuses NaN).

    One C-speed ``json.dumps`` scan first: the Python walk runs only for the
    rare value that needs it (a 1,024-instance prediction summary would
    otherwise cost a millisecond per request).
    """
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        return _json_walk(value)
    return value if _JSON_UNSAFE.search(text) is None else _json_walk(value)


def _ip_or_none(value: Any) -> str | None:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def audit_values_storable(values: dict[str, Any]) -> dict[str, Any]:
    """The values of one event made storable whatever their content (attribute names as keys).

    The writer must never fail on content: a NUL (PostgreSQL refuses it in
    text and jsonb), a lone surrogate (no UTF-8 encoder accepts it), a string
    longer than its column (PostgreSQL refuses it) or a NaN in JSON would
    turn one hostile request into a 503 ``audit_unavailable`` -- or into a
    request served unrecorded.  Text is escaped, never dropped; callers
    validate and escape at entry, so this changes nothing for them.
    """
    for attname, value in values.items():
        if isinstance(value, str):
            value = text_storable(value)
            limit = _CHAR_LIMITS.get(attname)
            if limit is not None and len(value) > limit:
                value = value[:limit]
            if attname in _IP_FIELDS:
                value = _ip_or_none(value)
            values[attname] = value
        elif attname in _JSON_FIELDS and value is not None:
            values[attname] = _json_storable(value)
    return values


def _write(event_type: str, fields: dict[str, Any]) -> tuple[dict[str, Any], int, Any, str]:
    unknown = set(fields) - _FIELDS
    if unknown:
        raise TypeError(f"unknown audit fields: {sorted(unknown)}")
    values = {_ATTNAMES[name]: value for name, value in fields.items()}
    values["event_type"] = event_type
    values.setdefault("occurred_at", timezone.now())
    values.setdefault("event_id", uuid.uuid4())
    audit_values_storable(values)
    alias = router.db_for_write(AuditEvent)
    try:
        if not connections[alias].features.can_return_columns_from_insert:
            event = AuditEvent(**values)
            event.save(using=alias)
            return values, event.seq, event.recorded_at, alias
        statement = _statements.get(alias)
        if statement is None:
            statement = _statements[alias] = _InsertStatement(alias)
        seq, recorded_at = statement.insert(values, alias)
        return values, seq, recorded_at, alias
    except DatabaseError as exc:
        logger.error("audit insert failed", extra={"error": str(exc)})
        raise AuditUnavailable("The audit trail could not record this request; nothing was served.") from exc


def audit_event_record(*, event_type: str, **fields: Any) -> AuditEvent:
    """Store one audit event durably (one INSERT) or raise ``AuditUnavailable``.

    ``fields`` are ``AuditEvent`` field names; unknown names are a programming
    error and raise ``TypeError`` at once.  Returns the stored event.
    """
    values, seq, recorded_at, alias = _write(event_type, fields)
    event = AuditEvent(**values)
    event.seq, event.recorded_at = seq, recorded_at
    event._state.adding = False
    event._state.db = alias
    return event


def audit_request_record(**fields: Any) -> int:
    """``audit_event_record`` of a ``request`` event for the request path; returns only its ``seq``.

    The same single INSERT without building a model instance afterwards
    (about 35 µs of a request's CPU that nobody on that path reads).
    """
    return _write(AuditEvent.Type.REQUEST, fields)[1]


def redact_secrets(value: Any) -> Any:
    """Copy of ``value`` with members named like secrets replaced by ``[redacted]``."""
    if isinstance(value, dict):
        return {
            key: (REDACTED if isinstance(key, str) and _SECRET_NAME.search(key) else redact_secrets(item))
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_secrets(item) for item in value]
    return value


def audit_change_record(
    *,
    actor: str,
    action: str,
    target: str,
    before: Any = None,
    after: Any = None,
    tenant_id: int | None = None,
    tenant_slug: str = "",
    event_type: str = AuditEvent.Type.CONFIG_CHANGE,
    request_id: str = "",
    extra: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record an admin/command change with before/after values (secret-named members redacted)."""
    detail: dict[str, Any] = {"target": target, "before": before, "after": after}
    if extra:
        detail.update(extra)
    return audit_event_record(
        event_type=event_type,
        action=action,
        actor=actor,
        tenant_id=tenant_id,
        tenant_slug=tenant_slug,
        request_id=request_id,
        detail=redact_secrets(detail),
    )
