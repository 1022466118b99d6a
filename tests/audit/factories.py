"""factory_boy factories for audit records (inserted through the append-only manager)."""

from __future__ import annotations

import factory
from django.utils import timezone

from audit.models import AuditEvent, LegalHold, TenantRetention


class AuditEventFactory(factory.django.DjangoModelFactory):
    """A request event as the pipeline records it."""

    class Meta:
        model = AuditEvent

    occurred_at = factory.LazyFunction(timezone.now)
    event_type = AuditEvent.Type.REQUEST
    action = "predict"
    request_id = factory.Sequence(lambda n: f"req-{n:08d}")
    tenant_id = 1
    tenant_slug = "acme"
    actor = factory.LazyAttribute(lambda o: f"tenant:{o.tenant_slug}/key:mk_test")
    key_prefix = "mk_test"
    method = "POST"
    path = "/v1/models/digits/predict"
    http_status = 200
    latency_ms = 3.25
    client_ip = "127.0.0.1"
    model_name = "digits"
    model_version = 1
    model_sha256 = "ab" * 32
    decision = "allow"
    rule_id = "baseline.allow"
    policy_versions = "baseline@1"
    units = 1
    prediction = factory.LazyFunction(lambda: {"labels": [3], "top_probabilities": [0.91]})
    detail = factory.LazyFunction(dict)


class TenantRetentionFactory(factory.django.DjangoModelFactory):
    """A retention period row."""

    class Meta:
        model = TenantRetention

    tenant_slug = factory.Sequence(lambda n: f"tenant-{n}")
    retention_days = 365


class LegalHoldFactory(factory.django.DjangoModelFactory):
    """An active legal hold."""

    class Meta:
        model = LegalHold

    tenant_slug = "acme"
    reason = "litigation"
    placed_by = "staff:legal"
