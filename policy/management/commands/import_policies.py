"""``manage.py import_policies FILE [--dry-run] [--reason TEXT]``: apply a policy document.

The file (YAML or JSON, as ``export_policies`` writes it) is validated like
an admin edit -- one invalid rule refuses the whole file -- and a new version
is created only for policies whose rules, window or enabled flag changed.
``--dry-run`` prints the diff of each policy that would change and writes
nothing.  Policies that are not in the file are left alone.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from policy.documents import load
from policy.rules import RuleError
from policy.services import policy_import


class Command(BaseCommand):
    """Import policies from a file."""

    help = "Import policies from a YAML or JSON file; --dry-run shows what would change."

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path to the policy document.")
        parser.add_argument("--dry-run", action="store_true", help="Show the diffs; change nothing.")
        parser.add_argument("--reason", help="Why (kept with every version created). Default: names the file.")
        parser.add_argument("--actor", default="command:import_policies", help="Who (recorded as the author).")

    def handle(self, *args, **options):
        path = Path(options["file"])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        try:
            data = load(text)
            changes = policy_import(
                data=data,
                actor=options["actor"],
                reason=options["reason"] or f"import_policies {path.name}",
                dry_run=options["dry_run"],
            )
        except (DomainError, RuleError) as exc:
            raise CommandError(f"{path}: {getattr(exc, 'detail', exc)}") from exc
        verb = {"create": "would create", "update": "would update"} if options["dry_run"] else {}
        for change in changes:
            if change.action == "unchanged":
                self.stdout.write(f"{change.name}: unchanged")
                continue
            label = verb.get(change.action, {"create": "created", "update": "updated"}[change.action])
            suffix = f" (version {change.version})" if change.version else ""
            self.stdout.write(f"{change.name}: {label}{suffix}")
            if options["dry_run"]:
                self.stdout.write(change.diff, ending="" if change.diff.endswith("\n") else "\n")
        changed = sum(1 for c in changes if c.action != "unchanged")
        summary = f"{changed} of {len(changes)} policies " + ("would change" if options["dry_run"] else "changed")
        self.stdout.write(summary + (" (dry run: nothing written)." if options["dry_run"] else "."))
