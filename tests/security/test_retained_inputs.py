"""Issue #13, privacy: retained raw inputs live outside the seal, encrypted, and are crypto-shredded at expiry.

A ``data_minimisation`` rule with ``retain_raw_input`` used to put the raw
input into the sealed, append-only audit row, where ``retention_days`` could
never be honoured.  Now the row keeps the keyed digest and a reference; the
input is encrypted under a key per tenant, retention period and expiry day;
at expiry the key is destroyed: the input is unrecoverable, the trail still
verifies and a signed tombstone says what was destroyed, when.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pytest

from audit.models import AuditEvent, RetainedInput, RetentionKey, ShreddingTombstone
from audit.schedule import audit_beat_schedule
from audit.services import audit_input_digest, audit_seal, audit_verify
from audit.services.retained import (
    RetainedInputUnavailable,
    retained_input_read,
    retained_inputs_shred,
    shredding_tombstone_verify,
)
from audit.tasks import retained_inputs_shred_task

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

PREDICT = "/v1/models/digits/predict"


@pytest.fixture
def retaining(db):
    """Tenant ``keeper`` may keep raw inputs for 30 days."""
    from policy.services import policy_create

    policy_create(
        name="tenant:keeper",
        scope="tenant",
        tenant_slug="keeper",
        actor="staff:test",
        reason="fraud investigations",
        document=[
            {
                "id": "keep-30",
                "type": "data_minimisation",
                "mode": "enforce",
                "params": {"retain_raw_input": True, "retention_days": 30},
            }
        ],
    )


def predict(client, caller, rows):
    body = json.dumps({"instances": rows, "purpose": "research"})
    response = client.post(PREDICT, data=body, content_type="application/json", **caller.headers)
    assert response.status_code == 200, response.content
    return AuditEvent.objects.get(request_id=response["X-Request-ID"], event_type="request")


def test_a_retained_input_is_encrypted_outside_the_sealed_record(client, digits, make_caller, digit_rows, retaining):
    caller = make_caller(slug="keeper")
    rows = digit_rows[:3]
    event = predict(client, caller, rows.tolist())
    assert event.raw_input is None  # never inside the append-only row
    reference = event.detail["retained_input"]
    stored = RetainedInput.objects.get(pk=reference["id"])
    assert stored.input_digest == event.input_digest and reference["key"] == stored.key.label
    assert rows.astype(np.float32).tobytes() not in bytes(stored.ciphertext)
    recovered = retained_input_read(retained_id=stored.pk)
    assert audit_input_digest(payload=recovered.tobytes()) == event.input_digest
    np.testing.assert_allclose(recovered, rows, rtol=1e-6)
    expires = datetime.fromisoformat(reference["expires_at"])
    assert event.occurred_at + timedelta(days=29) <= expires <= event.occurred_at + timedelta(days=30)
    # Another tenant without the rule keeps nothing at all.
    other = predict(client, make_caller(slug="plain"), rows.tolist())
    assert other.raw_input is None and "retained_input" not in other.detail
    assert RetainedInput.objects.count() == 1


def test_at_expiry_the_key_is_destroyed_the_trail_verifies_and_a_signed_tombstone_remains(
    client, digits, make_caller, digit_rows, retaining, settings
):
    settings.AUDIT_SEAL_LAG_SECONDS = 0
    caller = make_caller(slug="keeper")
    first = predict(client, caller, digit_rows[:2].tolist())
    second = predict(client, caller, digit_rows[2:4].tolist())
    key = RetentionKey.objects.get()
    assert audit_seal().events > 0
    assert retained_inputs_shred(now=key.expires_at - timedelta(seconds=1)) == []
    assert retained_input_read(retained_id=first.detail["retained_input"]["id"]).shape == (2, 64)
    [tomb_id] = retained_inputs_shred(now=key.expires_at, actor="system:test")
    for event in (first, second):
        with pytest.raises(RetainedInputUnavailable):
            retained_input_read(retained_id=event.detail["retained_input"]["id"])
    key.refresh_from_db()
    assert key.material is None and key.destroyed_at == key.expires_at
    tomb = ShreddingTombstone.objects.get(pk=tomb_id)
    assert tomb.key_label == key.label and tomb.tenant_slug == "keeper" and tomb.input_count == 2
    assert tomb.destroyed_at == key.expires_at and shredding_tombstone_verify(tombstone=tomb)
    forged = ShreddingTombstone.objects.get(pk=tomb_id)
    forged.input_count = 1
    assert not shredding_tombstone_verify(tombstone=forged)
    shred_event = AuditEvent.objects.get(action="retained_input.shred")
    assert shred_event.detail["after"]["tombstone_hash"] == tomb.tombstone_hash
    audit_seal()
    assert audit_verify().ok
    assert retained_inputs_shred(now=key.expires_at + timedelta(days=1)) == []  # idempotent


def test_shredding_is_a_scheduled_task():
    schedule = audit_beat_schedule(seal_interval_seconds=60)
    assert schedule["audit-shred-retained-inputs"]["task"] == retained_inputs_shred_task.name
