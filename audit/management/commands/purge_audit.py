"""``manage.py purge_audit``: run the retention purge now (beat runs it daily)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from audit.services import audit_purge


class Command(BaseCommand):
    help = "Remove whole sealed blocks past retention (skipping legal holds), leaving signed tombstones."

    def handle(self, *args: Any, **options: Any) -> None:
        result = audit_purge(actor="command:purge_audit")
        self.stdout.write(
            self.style.SUCCESS(
                f"Purged {result.blocks} block(s), {result.events} event(s) into {len(result.tombstones)} "
                f"tombstone(s); {result.held_blocks} expired block(s) kept by legal holds."
            )
        )
