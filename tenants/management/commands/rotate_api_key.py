"""``manage.py rotate_api_key PREFIX``: issue a successor; the old key works for the grace period.

The new key alone is printed on the last line (shown only now).  Audited as
``command:rotate_api_key``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from tenants.management.commands._common import actor_for, call, key_by_prefix
from tenants.services import api_key_rotate


class Command(BaseCommand):
    """Rotate an API key."""

    help = "Rotate an API key: rotate_api_key PREFIX [--grace-hours H]"

    def add_arguments(self, parser) -> None:
        parser.add_argument("prefix")
        parser.add_argument(
            "--grace-hours",
            dest="grace_hours",
            type=float,
            default=None,
            help=(
                f"How long the old key keeps working (default {settings.API_KEY_ROTATION_GRACE_HOURS:g}; "
                "0 = not at all)."
            ),
        )

    def handle(self, *args, **options) -> None:
        old = key_by_prefix(options["prefix"])
        issued = call(api_key_rotate, key=old, actor=actor_for(__name__), grace_hours=options["grace_hours"])
        old.refresh_from_db()
        self.stderr.write(
            f"rotated {old.prefix} -> {issued.key.prefix}; the old key is refused after "
            f"{old.grace_until.isoformat() if old.grace_until else 'now'}. New key (shown only now):"
        )
        self.stdout.write(issued.raw_key)
