"""Text from a request on its way into the audit trail or a log line.

Two rules, applied where text enters:

* **Declared text** (a purpose, an idempotency key) is *validated*: a lone
  surrogate (``"\\ud800"`` is valid JSON but no valid Unicode), a NUL or any
  other control character is refused with 400 ``malformed_request``.  Such a
  value is never meaningful, and storing an altered copy would make the
  record say something the client did not send.
* **Observed text** (the path, the query string, a header) is *escaped*: it is
  recorded whatever it holds, but control characters, NULs and surrogates
  become ``\\xNN``/``\\uNNNN`` escapes (and a backslash ``\\\\``), so the record
  is printable, unambiguous and storable on every backend (PostgreSQL refuses
  NUL in text; no UTF-8 codec accepts a lone surrogate).

Key-shaped strings (``<product>_<lookup id>.<secret>``) are redacted from
observed text before either is done: the public prefix stays (it is what
audit records name a key by), the secret becomes ``[redacted]``.
"""

from __future__ import annotations

import re

# Deliberately looser than tenants.keyformat's parser (any product prefix, any secret of the key
# alphabet from 16 characters): redaction must catch a truncated or mistyped key too.  No word
# boundary: in "Bearer%20maas_..." the key follows a digit.
KEY_SHAPED = re.compile(r"([a-z][a-z0-9]{0,15}_[a-z0-9]{8,32})\.[A-Za-z0-9_-]{16,}")
REDACTED_SECRET = "[redacted]"  # noqa: S105 - the placeholder, not a secret
# Query parameters that carry credentials by name, whatever their value looks like.
CREDENTIAL_PARAMETERS = frozenset({"api_key", "apikey", "api-key", "x-api-key", "access_token"})

# C0 controls, DEL, C1 controls and every surrogate code point.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_UNSAFE_OR_BACKSLASH = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\\]")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def text_is_clean(value: str) -> bool:
    """True when ``value`` holds no control character, NUL or surrogate."""
    return _UNSAFE.search(value) is None


def text_require_clean(value: str, *, what: str) -> str:
    """``value`` unchanged, or 400 ``malformed_request`` naming ``what`` when it holds unencodable text."""
    if _UNSAFE.search(value) is not None:
        # Imported here: this module sits under core.logging, which core.errors imports.
        from core.errors import MalformedRequest

        raise MalformedRequest(f"{what} holds a control character, a NUL or an unpaired surrogate.")
    return value


def text_escape(value: str) -> str:
    """``value`` with control characters, NULs, surrogates and backslashes escaped (``\\x00``, ``\\ud800``)."""
    if _UNSAFE_OR_BACKSLASH.search(value) is None:
        return value
    return _UNSAFE_OR_BACKSLASH.sub(_escape_char, value)


def credentials_redact(value: str) -> str:
    """``value`` with the secret of every key-shaped string replaced by ``[redacted]``."""
    if "_" not in value or "." not in value:
        return value
    return KEY_SHAPED.sub(lambda m: f"{m.group(1)}.{REDACTED_SECRET}", value)


def text_for_record(value: str, *, max_length: int | None = None) -> str:
    """Observed text as it may be logged or recorded: keys redacted, then escaped, then cut to ``max_length``."""
    text = text_escape(credentials_redact(value))
    return text if max_length is None else text[:max_length]


def credentials_in_query(query_string: str) -> bool:
    """True when a raw query string carries a key-shaped value or a credential-named parameter."""
    if not query_string:
        return False
    if KEY_SHAPED.search(query_string):
        return True
    for pair in query_string.split("&"):
        name, _, value = pair.partition("=")
        if value and name.strip().lower() in CREDENTIAL_PARAMETERS:
            return True
    return False


def text_storable(value: str) -> str:
    """``value`` made storable on every backend (NULs and surrogates escaped, other text untouched).

    The audit writer's last net: the request path escapes at entry already,
    this only guarantees no content can make an INSERT fail.
    """
    if _STORABLE_UNSAFE.search(value) is None:
        return value
    return _STORABLE_UNSAFE.sub(_escape_char, value)


_STORABLE_UNSAFE = re.compile(r"[\x00\ud800-\udfff]")
