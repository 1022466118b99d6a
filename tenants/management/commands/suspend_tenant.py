"""``manage.py suspend_tenant SLUG --reason ...``: refuse every key of a tenant (403 ``tenant_suspended``)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from tenants.management.commands._common import actor_for, call, tenant_by_slug
from tenants.services import tenant_suspend


class Command(BaseCommand):
    """Suspend a tenant (audited, effective in every process within about a second)."""

    help = "Suspend a tenant: suspend_tenant SLUG --reason TEXT"

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--reason", required=True, help="Why (recorded on the tenant and in the audit trail).")

    def handle(self, *args, **options) -> None:
        tenant = call(
            tenant_suspend, tenant=tenant_by_slug(options["slug"]), reason=options["reason"], actor=actor_for(__name__)
        )
        self.stdout.write(f"tenant {tenant.slug} suspended: {tenant.suspended_reason}")
