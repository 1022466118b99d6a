"""Raw inputs kept under a data-minimisation rule: encrypted, outside the seal, crypto-shredded at expiry.

A ``data_minimisation`` rule may let a tenant keep raw inputs for
``retention_days``.  They are never written into the sealed, append-only
audit row (which could then never forget them): the row keeps the input's
keyed digest and a reference, and the input itself is stored encrypted
(AES-256-GCM) under a key per tenant, retention period and day of expiry.
When that day comes, :func:`retained_inputs_shred` destroys the key: every
input under it becomes unrecoverable at once (in the database, replicas and
any copy of the ciphertext), the trail still verifies because no sealed row
changes, and a signed :class:`ShreddingTombstone` records what was destroyed
and when (signed and hashed exactly like the purge's tombstone).

Expiry is rounded *down* to the UTC day, so no input outlives its retention
period (it may go up to a day early).  Backups taken before the destruction
still hold the key: their own retention must not exceed the inputs'.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.blocks import header_bytes, header_hash, verify_signature
from audit.merkle import leaf_hash, merkle_root
from audit.models import AuditEvent, RetainedInput, RetentionKey, ShreddingTombstone
from audit.services.recording import audit_change_record, audit_input_digest, audit_input_payload
from audit.signing import signing_identity, trusted_public_keys


class RetainedInputUnavailable(Exception):
    """The input's key was destroyed (or the ciphertext does not match its record)."""


@dataclass(frozen=True)
class RetainedReference:
    """What the sealed audit record says about a retained input."""

    id: int
    key_label: str
    expires_at: str

    def as_detail(self) -> dict[str, object]:
        """The ``detail["retained_input"]`` member of the audit event."""
        return {"id": self.id, "key": self.key_label, "expires_at": self.expires_at}


def _expiry(now: datetime, days: int) -> datetime:
    """Start of the UTC day ``days`` after ``now``: never later than the retention period."""
    day = (now + timedelta(days=days)).astimezone(UTC).date()
    return datetime.combine(day, time.min, tzinfo=UTC)


def _key_for(*, tenant_id: int | None, tenant_slug: str, days: int, now: datetime) -> RetentionKey:
    expires_at = _expiry(now, days)
    label = f"{tenant_slug or '-'}/{days}d/{expires_at.date().isoformat()}"
    key = RetentionKey.objects.filter(label=label).first()
    if key is None:
        try:
            with transaction.atomic():
                key = RetentionKey.objects.create(
                    label=label,
                    tenant_id=tenant_id,
                    tenant_slug=tenant_slug,
                    retention_days=days,
                    expires_at=expires_at,
                    material=AESGCM.generate_key(bit_length=256),
                )
        except IntegrityError:  # a concurrent request created it first
            key = RetentionKey.objects.get(label=label)
    return key


def _aad(key: RetentionKey, input_digest: str) -> bytes:
    return f"{key.label}|{input_digest}".encode()


def retained_input_store(
    *,
    feeds: Mapping[str, np.ndarray],
    input_digest: str,
    days: int,
    tenant_id: int | None,
    tenant_slug: str,
    request_id: str,
    now: datetime | None = None,
) -> RetainedReference:
    """Encrypt the inputs under their tenant's key for ``days`` and store them; the audit event references them."""
    now = now or timezone.now()
    key = _key_for(tenant_id=tenant_id, tenant_slug=tenant_slug, days=days, now=now)
    if key.material is None:  # destroyed already (expiry day reached): keeping it is not allowed
        raise RetainedInputUnavailable(f"retention key {key.label} is already destroyed")
    buffer = io.BytesIO()
    # One .npz member per input, in signature order, so several inputs keep their names.
    np.savez(buffer, **{name: np.ascontiguousarray(array) for name, array in feeds.items()})
    nonce = os.urandom(12)
    ciphertext = AESGCM(bytes(key.material)).encrypt(nonce, buffer.getvalue(), _aad(key, input_digest))
    row = RetainedInput.objects.create(
        key=key, request_id=request_id, input_digest=input_digest, nonce=nonce, ciphertext=ciphertext
    )
    return RetainedReference(id=row.pk, key_label=key.label, expires_at=key.expires_at.isoformat())


def retained_input_read(*, retained_id: int) -> np.ndarray | dict[str, np.ndarray]:
    """Decrypt one retained input (the array, or arrays by name for several inputs).

    Raises ``RetainedInputUnavailable`` once its key is destroyed, or when the
    plaintext no longer matches the digest the sealed record committed to.
    """
    row = RetainedInput.objects.select_related("key").get(pk=retained_id)
    if row.key.material is None:
        raise RetainedInputUnavailable(f"retention key {row.key.label} was destroyed at {row.key.destroyed_at}")
    plain = AESGCM(bytes(row.key.material)).decrypt(
        bytes(row.nonce), bytes(row.ciphertext), _aad(row.key, row.input_digest)
    )
    with np.load(io.BytesIO(plain), allow_pickle=False) as archive:
        feeds = {name: archive[name] for name in archive.files}
    if audit_input_digest(payload=audit_input_payload(feeds)) != row.input_digest:
        raise RetainedInputUnavailable(f"retained input {retained_id} does not match its recorded digest")
    return next(iter(feeds.values())) if len(feeds) == 1 else feeds


def retained_inputs_shred(
    *, now: datetime | None = None, actor: str = "system", reason: str = "retention"
) -> list[int]:
    """Destroy every retention key past its expiry; one signed tombstone (and audit event) per key."""
    now = now or timezone.now()
    tombstones: list[int] = []
    due = RetentionKey.objects.filter(expires_at__lte=now, destroyed_at__isnull=True).values_list("pk", flat=True)
    for key_pk in list(due):
        with transaction.atomic():
            key = RetentionKey.objects.select_for_update().get(pk=key_pk)
            if key.destroyed_at is not None:
                continue
            digests = list(key.inputs.order_by("id").values_list("input_digest", flat=True))
            identity = signing_identity()
            tomb = ShreddingTombstone(
                key_label=key.label,
                tenant_slug=key.tenant_slug,
                retention_days=key.retention_days,
                key_expires_at=key.expires_at,
                input_count=len(digests),
                inputs_root=merkle_root([leaf_hash(bytes.fromhex(d)) for d in digests]).hex(),
                reason=reason,
                actor=actor,
                destroyed_at=now,
                key_id=identity.key_id,
            )
            header = tomb.header()
            tomb.signature = identity.sign(header_bytes(header))
            tomb.tombstone_hash = header_hash(header)
            tomb.save()
            RetentionKey.objects.filter(pk=key.pk).update(material=None, destroyed_at=now)
            audit_change_record(
                actor=actor,
                action="retained_input.shred",
                target=f"retention_key:{key.label}",
                before={"inputs": len(digests), "expires_at": key.expires_at.isoformat()},
                after={"tombstone": tomb.pk, "tombstone_hash": tomb.tombstone_hash},
                tenant_id=key.tenant_id,
                tenant_slug=key.tenant_slug,
                event_type=AuditEvent.Type.PURGE,
                extra={"reason": reason},
            )
        tombstones.append(tomb.pk)
    return tombstones


def shredding_tombstone_verify(*, tombstone: ShreddingTombstone) -> bool:
    """True if the stored tombstone's header hashes to its hash and carries a trusted signature."""
    header = tombstone.header()
    if header_hash(header) != tombstone.tombstone_hash:
        return False
    public_key = trusted_public_keys().get(tombstone.key_id)
    return public_key is not None and verify_signature(public_key, header_bytes(header), tombstone.signature)


__all__ = [
    "RetainedInputUnavailable",
    "RetainedReference",
    "retained_input_read",
    "retained_input_store",
    "retained_inputs_shred",
    "shredding_tombstone_verify",
]
