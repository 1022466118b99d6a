"""``manage.py create_tenant SLUG``: create a tenant (audited as ``command:create_tenant``)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from tenants.management.commands._common import actor_for, call
from tenants.models import Plan
from tenants.services import tenant_create


class Command(BaseCommand):
    """Create a tenant on a plan (the ``standard`` plan by default)."""

    help = "Create a tenant: create_tenant SLUG [--name] [--region] [--plan] [--verified] [--purposes ...]"

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug", help="Immutable identifier (lowercase letters, digits, hyphens).")
        parser.add_argument("--name", default="", help="Display name (default: the slug).")
        parser.add_argument("--region", default="eu", help="Data-residency region: cn, eu, us, ... (default eu).")
        parser.add_argument("--plan", default=None, help="Plan name (default: standard, created if missing).")
        parser.add_argument("--verified", action="store_true", help="Mark the tenant's identity as verified.")
        parser.add_argument("--purposes", nargs="*", default=[], help="Approved purposes, e.g. research evaluation.")
        parser.add_argument("--contact", default="", help="Contact (email or name).")

    def handle(self, *args, **options) -> None:
        plan = None
        if options["plan"]:
            plan = Plan.objects.filter(name=options["plan"]).first()
            if plan is None:
                raise CommandError(f"No plan {options['plan']!r}; create it in admin first.")
        tenant = call(
            tenant_create,
            slug=options["slug"],
            actor=actor_for(__name__),
            name=options["name"],
            region=options["region"],
            plan=plan,
            identity_verified=options["verified"],
            approved_purposes=options["purposes"],
            contact=options["contact"],
        )
        self.stdout.write(f"created tenant {tenant.slug} (id {tenant.pk}, region {tenant.region}, plan {tenant.plan})")
