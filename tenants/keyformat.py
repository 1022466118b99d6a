"""The API key format: generation, parsing and the keyed hash (Django-free).

A key reads ``maas_k7q2m9x4c1vd.<secret>``:

* ``maas`` is the readable product prefix (``API_KEY_PRODUCT_PREFIX``), so a
  leaked key is recognisable by secret scanners and by humans;
* ``k7q2m9x4c1vd`` is the lookup id; together with the product prefix it forms
  the key's public *prefix*, which is stored, shown in admin and written to
  logs and audit records;
* ``<secret>`` is 256 bits from :mod:`secrets` (OWASP ASVS asks for at least
  128), URL-safe base64.

Only the prefix and ``HMAC-SHA-256(pepper, key)`` are stored.  A keyed fast
hash is right here: the secret has full entropy, so a slow password hasher
would add milliseconds per request and no security; the pepper (kept outside
the database) makes a stolen table useless on its own.  Comparison is
constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

#: Lookup ids use an alphabet without look-alikes, so they survive being read aloud or retyped.
LOOKUP_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
LOOKUP_LENGTH = 12
SECRET_BYTES = 32

# Parsing is deliberately more tolerant than generation (any product prefix,
# lookup ids of 8-32 characters) so that keys survive a change of the product
# prefix setting; anything else is malformed before touching the database.
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,15}_[a-z0-9]{8,32}$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{22,128}$")
_PRODUCT_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")


@dataclass(frozen=True)
class ParsedKey:
    """A syntactically valid key split into its stored prefix and its secret."""

    prefix: str
    secret: str
    raw: str


def key_prefix_generate(product_prefix: str) -> str:
    """A fresh public prefix such as ``maas_k7q2m9x4c1vd`` (about 59 bits; unique by constraint)."""
    if not _PRODUCT_RE.match(product_prefix):
        raise ValueError(f"product prefix must be 1-16 lowercase letters/digits, got {product_prefix!r}")
    lookup = "".join(secrets.choice(LOOKUP_ALPHABET) for _ in range(LOOKUP_LENGTH))
    return f"{product_prefix}_{lookup}"


def key_secret_generate() -> str:
    """256 random bits, URL-safe base64 without padding (43 characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def key_compose(prefix: str, secret: str) -> str:
    """The full key as handed to the client exactly once."""
    return f"{prefix}.{secret}"


def key_parse(raw: str) -> ParsedKey | None:
    """Split ``raw`` into prefix and secret, or ``None`` when it cannot be a key of ours."""
    if not raw or len(raw) > 200:
        return None
    prefix, dot, secret = raw.partition(".")
    if not dot or not _PREFIX_RE.match(prefix) or not _SECRET_RE.match(secret):
        return None
    return ParsedKey(prefix=prefix, secret=secret, raw=raw)


def key_hash(raw: str, pepper: str) -> str:
    """``HMAC-SHA-256(pepper, raw)`` as 64 hex characters; covers the prefix too, binding it to the secret."""
    return hmac.new(pepper.encode(), raw.encode(), hashlib.sha256).hexdigest()


def key_hash_matches(raw: str, pepper: str, stored_hash: str) -> bool:
    """Constant-time comparison of ``raw``'s hash with the stored one."""
    return hmac.compare_digest(key_hash(raw, pepper), stored_hash)
