"""``manage.py unsuspend_tenant SLUG --reason ...``: lift a suspension (audited)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from tenants.management.commands._common import actor_for, call, tenant_by_slug
from tenants.services import tenant_unsuspend


class Command(BaseCommand):
    """Lift a tenant's suspension."""

    help = "Lift a suspension: unsuspend_tenant SLUG --reason TEXT"

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--reason", required=True, help="Why (recorded in the audit trail).")

    def handle(self, *args, **options) -> None:
        tenant = call(
            tenant_unsuspend,
            tenant=tenant_by_slug(options["slug"]),
            reason=options["reason"],
            actor=actor_for(__name__),
        )
        self.stdout.write(f"tenant {tenant.slug} is {tenant.status}")
