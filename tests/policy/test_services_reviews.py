"""The human-oversight queue: items are queued by the pipeline and resolved by a reviewer with a note."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from core.errors import ValidationFailed
from policy.errors import ReviewItemConflict
from policy.models import ReviewItem
from policy.services import review_item_create, review_item_resolve, review_items_create
from tests.policy.factories import ModelFactsFactory, PrincipalFactory, ReviewItemFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_create_queues_a_pending_item_with_the_request_facts():
    principal = PrincipalFactory(tenant_id=9, tenant_slug="demo", key_prefix="key-abc")
    result = review_item_create(
        audit_seq=123,
        request_id="req-1",
        principal=principal,
        model=ModelFactsFactory(version=3),
        label=7,
        top_probability=0.42,
    )
    assert result is None
    item = ReviewItem.objects.get()
    assert (item.audit_seq, item.request_id, item.tenant_id, item.tenant_slug, item.key_prefix) == (
        123,
        "req-1",
        9,
        "demo",
        "key-abc",
    )
    assert (item.model_name, item.model_version, item.label, item.top_probability) == ("digits", 3, "7", 0.42)
    assert item.status == ReviewItem.Status.PENDING


def test_batch_create_is_one_call():
    count = review_items_create(
        audit_seq=5,
        request_id="req-b",
        principal=PrincipalFactory(),
        model=ModelFactsFactory(),
        predictions=[(1, 0.3), ("cat", 0.5)],
    )
    assert count == 2
    assert sorted(ReviewItem.objects.values_list("label", flat=True)) == ["1", "cat"]


def test_resolve_records_reviewer_note_and_audit_event():
    item = ReviewItemFactory(request_id="req-9", audit_seq=77)
    resolved = review_item_resolve(item=item, actor="staff:carol", note="Checked by hand: label is right.")
    assert resolved.status == ReviewItem.Status.REVIEWED
    assert (resolved.reviewer, resolved.note) == ("staff:carol", "Checked by hand: label is right.")
    assert resolved.reviewed_at is not None
    event = AuditEvent.objects.get(event_type="policy.review")
    assert (event.action, event.actor, event.request_id, event.tenant_slug) == (
        "review.resolve",
        "staff:carol",
        "req-9",
        "demo",
    )
    assert event.detail["after"]["note"] == "Checked by hand: label is right."
    assert event.detail["audit_seq"] == 77


def test_resolve_needs_a_note_and_happens_once():
    item = ReviewItemFactory()
    with pytest.raises(ValidationFailed, match="needs a note"):
        review_item_resolve(item=item, actor="staff:carol", note=" ")
    assert ReviewItem.objects.get(pk=item.pk).status == ReviewItem.Status.PENDING
    review_item_resolve(item=item, actor="staff:carol", note="ok")
    with pytest.raises(ReviewItemConflict):
        review_item_resolve(item=item, actor="staff:dave", note="again")
    assert AuditEvent.objects.filter(event_type="policy.review").count() == 1
