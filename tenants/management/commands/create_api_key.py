"""``manage.py create_api_key SLUG``: issue a key; the key alone is printed on the last line.

The key is shown this once and never stored (only its prefix and a keyed
hash); scripts can take it with ``| tail -n1``.  Audited as
``command:create_api_key`` (by prefix, never the key).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError

from tenants.management.commands._common import actor_for, call, tenant_by_slug
from tenants.principal import ALL_SCOPES
from tenants.services import api_key_create


class Command(BaseCommand):
    """Issue an API key for a tenant."""

    help = "Issue an API key: create_api_key SLUG [--name] [--scopes ...] [--models ...] [--expires-days N]"

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="default", help="A label for the key.")
        parser.add_argument("--scopes", nargs="+", default=None, help=f"Scopes (default all: {' '.join(ALL_SCOPES)}).")
        parser.add_argument("--models", nargs="*", default=[], help="Allowed models (default: any of the tenant's).")
        parser.add_argument(
            "--expires-days", dest="expires_days", type=float, default=None, help="Expire after N days."
        )

    def handle(self, *args, **options) -> None:
        tenant = tenant_by_slug(options["slug"])
        expires_at = None
        if options["expires_days"] is not None:
            if options["expires_days"] <= 0:
                raise CommandError("--expires-days must be positive.")
            expires_at = datetime.now(UTC) + timedelta(days=options["expires_days"])
        issued = call(
            api_key_create,
            tenant=tenant,
            actor=actor_for(__name__),
            name=options["name"],
            scopes=options["scopes"],
            allowed_models=options["models"],
            expires_at=expires_at,
        )
        key = issued.key
        self.stderr.write(
            f"created key {key.prefix} for {tenant.slug} (scopes {', '.join(key.scopes)}"
            f"{', expires ' + key.expires_at.isoformat() if key.expires_at else ''}); it is shown only now:"
        )
        self.stdout.write(issued.raw_key)
