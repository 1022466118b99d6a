"""``manage.py list_models``: the registry as a table, or ``--json`` for scripts."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand

from inference.models import ModelVersion
from inference.selectors import model_versions_list


def version_as_dict(row: ModelVersion) -> dict[str, Any]:
    """Everything the registry records about one version, JSON-ready."""
    return {
        "name": row.name,
        "version": row.version,
        "status": row.status,
        "accuracy": row.accuracy,
        "sha256": row.sha256,
        "file_path": row.file_path,
        "file_size": row.file_size,
        "input_width": row.input_width,
        "value_min": row.value_min,
        "value_max": row.value_max,
        "labels": row.labels,
        "risk_tier": row.risk_tier,
        "region": row.region,
        "signature": row.signature,
        "metrics": row.metrics,
        "lineage": row.lineage,
        "created_by": row.created_by,
        "created_at": row.created_at.isoformat(),
        "activated_at": row.activated_at.isoformat() if row.activated_at else None,
        "retired_at": row.retired_at.isoformat() if row.retired_at else None,
    }


class Command(BaseCommand):
    """List every registered version, newest first within each model."""

    help = "List registered model versions (a table, or --json)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="Print a JSON list with every recorded field.")
        parser.add_argument("--name", default=None, help="Only this model.")

    def handle(self, *args, **options) -> None:
        rows = list(model_versions_list(name=options["name"]))
        if options["json"]:
            self.stdout.write(json.dumps([version_as_dict(row) for row in rows], indent=2))
            return
        if not rows:
            self.stdout.write("no models registered (run: manage.py train_model --activate)")
            return
        header = ("NAME", "VER", "STATUS", "ACCURACY", "SHA256", "WIDTH", "RANGE", "TIER", "REGION", "CREATED", "BY")
        table = [header]
        for row in rows:
            table.append(
                (
                    row.name,
                    str(row.version),
                    row.status,
                    f"{row.accuracy:.4f}" if row.accuracy is not None else "-",
                    row.sha256[:12],
                    str(row.input_width),
                    f"{row.value_min:g}..{row.value_max:g}",
                    row.risk_tier,
                    row.region,
                    row.created_at.strftime("%Y-%m-%d %H:%M"),
                    row.created_by,
                )
            )
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        for line in table:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
