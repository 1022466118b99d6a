"""``manage.py ensure_compliance_group``: create or repair the compliance officer group."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from audit.services import compliance_group_ensure


class Command(BaseCommand):
    help = "Create or repair the 'compliance officer' group: view audit/policy/usage, export; change nothing."

    def handle(self, *args: Any, **options: Any) -> None:
        result = compliance_group_ensure(actor="command:ensure_compliance_group")
        verb = "Created" if result.created else "Updated"
        self.stdout.write(self.style.SUCCESS(f"{verb} group {result.group.name!r} with:"))
        for label in result.permissions:
            self.stdout.write(f"  {label}")
