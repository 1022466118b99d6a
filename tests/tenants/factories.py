"""factory_boy factories for plans and tenants (keys are issued through the service)."""

from __future__ import annotations

import factory
from factory.django import DjangoModelFactory

from tenants.models import Plan, Tenant


class PlanFactory(DjangoModelFactory):
    """A plan with no rate or quota limit unless given."""

    class Meta:
        model = Plan

    name = factory.Sequence(lambda n: f"plan-{n}")
    rate_per_second = None
    burst = None
    daily_instances = None
    monthly_instances = None
    max_batch = 1024


class TenantFactory(DjangoModelFactory):
    """An active, identity-verified tenant in the EU."""

    class Meta:
        model = Tenant

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())
    region = "eu"
    identity_verified = True
    verified_by = "test"
    approved_purposes = factory.LazyFunction(lambda: ["research"])
    plan = factory.SubFactory(PlanFactory)
