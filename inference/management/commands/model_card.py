"""``manage.py model_card NAME VERSION``: show, complete and export a version's structured model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from inference.model_card import STATED_FIELDS, card_html, card_json, card_missing
from inference.selectors import model_version_get
from inference.services import model_version_update


def card_fields_read(raw: str | None) -> dict[str, Any] | None:
    """Card fields from a JSON object given inline or as ``@FILE``; ``CommandError`` when unreadable."""
    if raw is None:
        return None
    text = raw
    if raw.startswith("@"):
        try:
            text = Path(raw[1:]).read_text()
        except OSError as exc:
            raise CommandError(f"Cannot read {raw[1:]}: {exc.strerror}") from exc
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"The model card fields are not valid JSON: {exc}") from exc
    if not isinstance(fields, dict):
        raise CommandError("The model card fields must be a JSON object.")
    return fields


class Command(BaseCommand):
    """Print the card (JSON or HTML), optionally after setting fields; ``--output`` writes a file."""

    help = "Show, complete (--set, --field) and export (--format json|html, --output FILE) a version's model card."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("version", type=int)
        parser.add_argument("--set", dest="fields", default=None, help="Fields as a JSON object, or @FILE.json.")
        for key in STATED_FIELDS:
            if key != "metrics_per_class":
                parser.add_argument(f"--{key.replace('_', '-')}", dest=key, default=None, help=STATED_FIELDS[key])
        parser.add_argument("--format", choices=["json", "html"], default="json")
        parser.add_argument("--output", default=None, help="Write the export here instead of standard output.")

    def handle(self, *args, **options) -> None:
        try:
            version = model_version_get(name=options["name"], version=options["version"])
            fields = card_fields_read(options["fields"]) or {}
            fields.update({key: options[key] for key in STATED_FIELDS if options.get(key) is not None})
            if fields:
                version = model_version_update(version=version, actor="command:model_card", card=fields)
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        text = card_html(version) if options["format"] == "html" else card_json(version)
        if options["output"]:
            Path(options["output"]).write_text(text, encoding="utf-8")
            self.stdout.write(self.style.SUCCESS(f"wrote the model card of {version.ref} to {options['output']}"))
        else:
            self.stdout.write(text, ending="")
        missing = card_missing(version)
        if missing:
            self.stderr.write(
                f"{version.ref} is at risk tier 'high' and cannot be activated before these fields are stated: "
                f"{', '.join(missing)}"
            )
