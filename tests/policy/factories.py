"""Factories for policy tests: callers (``Principal``), model facts, stored policies and queue items."""

from __future__ import annotations

import factory

from policy.evaluator import ModelFacts
from policy.models import ReviewItem
from tenants.principal import Principal


class PrincipalFactory(factory.Factory):
    """An authenticated caller of tenant ``demo`` in region ``eu``, not identity-verified."""

    class Meta:
        model = Principal

    tenant_id = factory.Sequence(lambda n: n + 1)
    tenant_slug = "demo"
    region = "eu"
    identity_verified = False
    approved_purposes = ("research",)
    key_id = factory.Sequence(lambda n: n + 1)
    key_prefix = factory.Sequence(lambda n: f"key{n:05d}")
    scopes = frozenset({"predict"})
    allowed_models = frozenset()


class ModelFactsFactory(factory.Factory):
    """A limited-risk model deployed in ``eu``."""

    class Meta:
        model = ModelFacts

    name = "digits"
    version = 1
    risk_tier = "limited"
    region = "eu"


class ReviewItemFactory(factory.django.DjangoModelFactory):
    """A pending review item of tenant ``demo``."""

    class Meta:
        model = ReviewItem

    audit_seq = factory.Sequence(lambda n: n + 1)
    request_id = factory.Sequence(lambda n: f"req-{n:08d}")
    tenant_id = 1
    tenant_slug = "demo"
    key_prefix = "key00001"
    model_name = "digits"
    model_version = 1
    label = "7"
    top_probability = 0.41
