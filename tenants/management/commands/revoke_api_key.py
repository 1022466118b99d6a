"""``manage.py revoke_api_key PREFIX``: revoke a key everywhere within about a second (audited)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from tenants.management.commands._common import actor_for, call, key_by_prefix
from tenants.services import api_key_revoke


class Command(BaseCommand):
    """Revoke an API key."""

    help = "Revoke an API key: revoke_api_key PREFIX [--reason TEXT]"

    def add_arguments(self, parser) -> None:
        parser.add_argument("prefix", help="The key's prefix (e.g. maas_k7q2m9x4c1vd).")
        parser.add_argument("--reason", default="revoked by an administrator", help="Recorded in the audit trail.")

    def handle(self, *args, **options) -> None:
        key = key_by_prefix(options["prefix"])
        was_revoked = key.revoked
        key = call(api_key_revoke, key=key, reason=options["reason"], actor=actor_for(__name__))
        state = "was already revoked" if was_revoked else "revoked"
        self.stdout.write(f"key {key.prefix} of {key.tenant.slug} {state}")
