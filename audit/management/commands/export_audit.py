"""``manage.py export_audit``: write an export file and its signed manifest (``FILE.manifest.json``)."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audit.canonical import canonical_json
from audit.errors import InvalidExportFilter
from audit.selectors import ExportFilters
from audit.services import audit_export_write
from audit.services.export import FORMATS


class Command(BaseCommand):
    help = (
        "Export audit events as CSV or JSON Lines with a signed manifest. "
        "Verify offline with: python -m audit.verify_export FILE FILE.manifest.json --public-key KEY.pem"
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--since", help="ISO date/date-time (UTC when no offset), inclusive.")
        parser.add_argument("--until", help="ISO date/date-time, exclusive.")
        parser.add_argument("--tenant", default="", help="Tenant slug.")
        parser.add_argument("--model", default="", help="Model name.")
        parser.add_argument("--event-type", default="", help="Event type, e.g. request or config.change.")
        parser.add_argument("--decision", default="", help="Policy decision: allow or deny.")
        parser.add_argument("--format", choices=FORMATS, default="csv")
        parser.add_argument("--output", help="File to write (default: EXPORT_DIR/audit-export-<time>.<format>).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            filters = ExportFilters.from_mapping(options)
        except InvalidExportFilter as exc:
            raise CommandError(str(exc), returncode=2) from exc
        fmt = options["format"]
        if options["output"]:
            output = Path(options["output"])
        else:
            stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
            output = Path(settings.EXPORT_DIR) / f"audit-export-{stamp}.{fmt}"
        output.parent.mkdir(parents=True, exist_ok=True)
        manifest_path = Path(f"{output}.manifest.json")
        actor = f"command:export_audit ({getpass.getuser()})"
        # Exports hold personal data: created readable by this account only.
        with os.fdopen(os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
            manifest = audit_export_write(
                filters=filters, format=fmt, stream=fh, actor=actor, source="command", file_name=output.name
            )
        with os.fdopen(os.open(manifest_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            fh.write(canonical_json(manifest))
        blocks = manifest["blocks"]
        full = sum(1 for b in blocks if b["coverage"] == "full")
        self.stdout.write(
            self.style.SUCCESS(
                f"Exported {manifest['row_count']} events to {output} (sha256 {manifest['sha256']}); "
                f"{len(blocks)} sealed blocks covered ({full} fully), {manifest['unsealed_rows']} rows not yet "
                f"sealed. Manifest: {manifest_path}"
            )
        )
