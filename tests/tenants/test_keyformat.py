"""The key format, its entropy and the keyed hash (pure functions)."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

from tenants.keyformat import (
    LOOKUP_ALPHABET,
    key_compose,
    key_hash,
    key_hash_matches,
    key_parse,
    key_prefix_generate,
    key_secret_generate,
)


def test_generated_key_has_readable_prefix_lookup_and_secret():
    prefix = key_prefix_generate("maas")
    raw = key_compose(prefix, key_secret_generate())
    assert re.fullmatch(r"maas_[a-z0-9]{12}\.[A-Za-z0-9_-]{43}", raw), raw
    parsed = key_parse(raw)
    assert parsed is not None
    assert parsed.prefix == prefix
    assert set(prefix.split("_", 1)[1]) <= set(LOOKUP_ALPHABET)


def test_secret_carries_at_least_128_bits_and_never_repeats():
    secrets_seen = {key_secret_generate() for _ in range(2000)}
    assert len(secrets_seen) == 2000
    sample = next(iter(secrets_seen))
    # 43 URL-safe base64 characters carry 6 bits each: 256 bits (>= 128 required).
    assert len(sample) * 6 >= 256


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "maas_abcdefghjkmn",
        "maas_abcdefghjkmn.",
        ".secretsecretsecretsecretsecret",
        "maas_ABCDEFGHJKMN.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "maas_abc.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "maas_abcdefghjkmn.short",
        "maas_abcdefghjkmn.has spaces in the secret part ok?",
        "Basic dXNlcjpwYXNz",
        "maas_abcdefghjkmn." + "a" * 300,
    ],
)
def test_malformed_keys_do_not_parse(raw):
    assert key_parse(raw) is None


def test_hash_is_hmac_sha256_with_the_pepper_over_the_whole_key():
    raw = key_compose(key_prefix_generate("maas"), key_secret_generate())
    expected = hmac.new(b"pepper-1", raw.encode(), hashlib.sha256).hexdigest()
    assert key_hash(raw, "pepper-1") == expected
    assert key_hash(raw, "pepper-2") != expected
    assert key_hash_matches(raw, "pepper-1", expected)
    assert not key_hash_matches(raw + "x", "pepper-1", expected)


def test_product_prefix_must_be_plain():
    with pytest.raises(ValueError):
        key_prefix_generate("Bad Prefix")
