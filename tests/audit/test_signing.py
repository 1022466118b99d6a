"""The signing key: configured PEM, generated file (0600, race-safe), production refusal, rotation."""

from __future__ import annotations

import multiprocessing
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.exceptions import ImproperlyConfigured

from audit import signing
from audit.services import audit_seal, audit_verify
from audit.services.verification import BLOCK, CHECKPOINT
from audit.signing import public_key_pem_of, signing_identity

pytestmark = [pytest.mark.embedded]


def _pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_inline_pem_with_escaped_newlines(settings):
    key = Ed25519PrivateKey.generate()
    settings.AUDIT_SIGNING_KEY = _pem(key).replace("\n", "\\n")
    identity = signing_identity()
    assert identity.public_key_pem == public_key_pem_of(key.public_key())


def test_missing_file_is_generated_private(settings, tmp_path):
    path = tmp_path / "keys" / "audit.pem"
    settings.AUDIT_SIGNING_KEY = ""
    settings.AUDIT_SIGNING_KEY_FILE = str(path)
    first = signing_identity()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".audit-key-")]
    assert signing.signing_identity().key_id == first.key_id


def _load_in_child(path: str, queue) -> None:
    queue.put(signing._load_identity("", path).key_id)


def test_concurrent_first_use_agrees_on_one_key(tmp_path):
    path = str(tmp_path / "race.pem")
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_load_in_child, args=(path, queue)) for _ in range(6)]
    for child in children:
        child.start()
    key_ids = {queue.get(timeout=30) for _ in children}
    for child in children:
        child.join(30)
    assert len(key_ids) == 1


def test_production_refuses_to_invent_a_key(tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_ENV", "production")
    with pytest.raises(ImproperlyConfigured, match="production"):
        signing._load_identity("", str(tmp_path / "absent.pem"))
    assert not (tmp_path / "absent.pem").exists()


def test_non_ed25519_keys_are_refused():
    with pytest.raises(ImproperlyConfigured, match="Ed25519"):
        signing._load_identity(_pem(generate_private_key(SECP256R1())), "")


@pytest.mark.django_db
def test_rotation_keeps_old_blocks_verifiable_only_when_trusted(settings, sealed):
    old_identity = signing_identity()
    settings.AUDIT_SIGNING_KEY = _pem(Ed25519PrivateKey.generate())
    report = audit_verify()
    assert [p.kind for p in report.problems if p.kind != CHECKPOINT] == [BLOCK, BLOCK, BLOCK]
    assert "untrusted key" in report.first_problem.message
    # The checkpoints outside the database were signed by the old key too: untrusted alike.
    assert any(p.kind == CHECKPOINT and "not trusted" in p.message for p in report.problems)
    settings.AUDIT_TRUSTED_PUBLIC_KEYS = [old_identity.public_key_pem]
    assert audit_verify().ok
    from .factories import AuditEventFactory

    AuditEventFactory()
    assert audit_seal().blocks == [4]
    assert audit_verify().ok
