"""``manage.py export_policies [--format yaml|json] [--output FILE]``: policies as a reviewable document.

Writes every policy's current version (rules, scope, window, enabled flag)
in the format ``import_policies`` reads, so policies can live in version
control and move between environments.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand

from policy.documents import dump
from policy.selectors import policy_export


class Command(BaseCommand):
    """Export policies to stdout or a file."""

    help = "Export every policy's current version as YAML (default) or JSON."

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=["yaml", "json"], default="yaml", help="Output format.")
        parser.add_argument("--output", help="Write to this file instead of standard output.")

    def handle(self, *args, **options):
        data = policy_export()
        text = dump(data, options["format"])
        if options["output"]:
            Path(options["output"]).write_text(text, encoding="utf-8")
            self.stderr.write(f"Wrote {len(data['policies'])} policies to {options['output']}.")
        else:
            self.stdout.write(text, ending="")
