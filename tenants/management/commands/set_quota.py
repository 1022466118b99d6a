"""``manage.py set_quota SLUG``: set a tenant's (or with ``--key`` a key's) limit overrides.

Each option takes a number, or ``inherit`` to drop the override and fall back
to the plan (for a tenant) or the tenant (for a key).  Audited as
``command:set_quota``; every gateway process applies it within about a second.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from tenants.management.commands._common import actor_for, call, key_by_prefix, limit_value, tenant_by_slug
from tenants.selectors import tenant_limits
from tenants.services import api_key_update, tenant_quota_set

_OPTIONS = {
    "rate": "rate_per_second",
    "burst": "burst",
    "daily": "daily_instances",
    "monthly": "monthly_instances",
    "max_batch": "max_batch",
    "max_body_bytes": "max_body_bytes",
    "max_jobs": "max_concurrent_jobs",
    "max_job_instances": "max_job_instances",
}


class Command(BaseCommand):
    """Set limit overrides of a tenant or one of its keys."""

    help = (
        "Set overrides: set_quota SLUG [--key PREFIX] [--rate PER_SECOND] [--burst N] [--daily N] [--monthly N] "
        "[--max-batch N] [--max-body-bytes N] [--max-jobs N] [--max-job-instances N] (value 'inherit' clears)"
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--key", default=None, help="Set the overrides of this key (prefix) instead.")
        parser.add_argument("--rate", help="Requests per second (token bucket refill).")
        parser.add_argument("--burst", help="Token bucket size.")
        parser.add_argument("--daily", help="Instances per UTC day.")
        parser.add_argument("--monthly", help="Instances per UTC month.")
        parser.add_argument("--max-batch", dest="max_batch", help="Instances per request.")
        parser.add_argument("--max-body-bytes", dest="max_body_bytes", help="Request body size in bytes.")
        parser.add_argument("--max-jobs", dest="max_jobs", help="Concurrent asynchronous jobs.")
        parser.add_argument("--max-job-instances", dest="max_job_instances", help="Instances per job.")

    def handle(self, *args, **options) -> None:
        changes = {field: limit_value(options[opt]) for opt, field in _OPTIONS.items() if options[opt] is not None}
        if not changes:
            raise CommandError("Give at least one limit option (see --help).")
        tenant = tenant_by_slug(options["slug"])
        actor = actor_for(__name__)
        if options["key"]:
            key = key_by_prefix(options["key"])
            if key.tenant_id != tenant.pk:
                raise CommandError(f"Key {key.prefix} does not belong to tenant {tenant.slug}.")
            key = call(api_key_update, key=key, actor=actor, **changes)
            values = {name: getattr(key, name) for name in changes}
            self.stdout.write(f"key {key.prefix} overrides: {values}")
            return
        tenant = call(tenant_quota_set, tenant=tenant, actor=actor, overrides=changes)
        limits = tenant_limits(tenant=tenant)
        self.stdout.write(f"tenant {tenant.slug} effective limits: {limits}")
