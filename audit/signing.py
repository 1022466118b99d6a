"""The Ed25519 key that signs sealed blocks, tombstones and export manifests.

The key comes from ``settings.AUDIT_SIGNING_KEY`` (a PEM string, e.g. from a
secret store via the environment; ``\\n`` escapes are accepted) or from the
file ``settings.AUDIT_SIGNING_KEY_FILE``.  The embedded run generates the file
on first use with mode 0600; several processes may race to do so, and the
write-then-hard-link dance below makes exactly one of them win while the others
read its complete file (never a half-written one).  In production a missing
key is a configuration error rather than a silently generated new identity.

Old public keys stay trusted for verification through the optional setting
``AUDIT_TRUSTED_PUBLIC_KEYS`` (a list of PEM strings), which is how a key is
rotated without invalidating blocks sealed before.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from audit.blocks import SIGNATURE_ALGORITHM, load_public_key, public_key_fingerprint
from core.env import is_production


@dataclass(frozen=True)
class SigningIdentity:
    """The loaded private key with its public half, PEM and key id."""

    private_key: Ed25519PrivateKey
    public_key: Ed25519PublicKey
    public_key_pem: str
    key_id: str
    algorithm: str = SIGNATURE_ALGORITHM

    def sign(self, message: bytes) -> str:
        """Hex Ed25519 signature of ``message``."""
        return self.private_key.sign(message).hex()


_lock = threading.Lock()
_cache: dict[tuple[str, str], SigningIdentity] = {}


def _load_private_pem(pem: bytes, source: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"{source} is not a PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured(f"{source} must be an Ed25519 private key")
    return key


def _generate_key_file(path: Path) -> None:
    """Create ``path`` with a fresh key unless another process already did."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # mkstemp creates the file 0600; link() then publishes it atomically and
    # fails if the name exists, so a racing process never sees a partial key.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".audit-key-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def _load_identity(inline_pem: str, key_file: str) -> SigningIdentity:
    if inline_pem.strip():
        private_key = _load_private_pem(inline_pem.replace("\\n", "\n").encode(), "AUDIT_SIGNING_KEY")
    else:
        if not key_file:
            raise ImproperlyConfigured("Set AUDIT_SIGNING_KEY or AUDIT_SIGNING_KEY_FILE to sign the audit trail")
        path = Path(key_file)
        if not path.exists():
            if is_production():
                raise ImproperlyConfigured(
                    f"AUDIT_SIGNING_KEY is unset and {path} does not exist: a production deployment must "
                    "configure its audit signing key instead of generating a new one"
                )
            _generate_key_file(path)
        private_key = _load_private_pem(path.read_bytes(), str(path))
    public_key = private_key.public_key()
    public_pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return SigningIdentity(private_key, public_key, public_pem, public_key_fingerprint(public_key))


def signing_identity() -> SigningIdentity:
    """The configured signing key, loaded once per process (per configuration)."""
    config = (settings.AUDIT_SIGNING_KEY or "", settings.AUDIT_SIGNING_KEY_FILE or "")
    identity = _cache.get(config)
    if identity is None:
        with _lock:
            identity = _cache.get(config)
            if identity is None:
                identity = _load_identity(*config)
                _cache[config] = identity
    return identity


def trusted_public_keys() -> dict[str, Ed25519PublicKey]:
    """Keys whose signatures verification accepts: the current one plus configured old ones."""
    identity = signing_identity()
    keys = {identity.key_id: identity.public_key}
    for pem in getattr(settings, "AUDIT_TRUSTED_PUBLIC_KEYS", ()) or ():
        key = load_public_key(pem.replace("\\n", "\n"))
        keys[public_key_fingerprint(key)] = key
    return keys


def public_key_pem_of(public_key: Ed25519PublicKey) -> str:
    """PEM text of a public key (for manifests that embed every key they rely on)."""
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
