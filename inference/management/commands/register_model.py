"""``manage.py register_model FILE --name NAME``: register an existing ONNX file (no training lineage)."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from inference.management.commands.model_card import card_fields_read
from inference.management.commands.train_model import describe_version
from inference.models import RiskTier
from inference.reference_data import reference_data_load
from inference.services import model_version_activate, model_version_register
from inference.signature import OutputKind


def _labels(raw: str | None) -> list | None:
    if raw is None:
        return None
    if raw.strip().startswith("["):
        return json.loads(raw)
    return [int(item) if item.strip().lstrip("-").isdigit() else item.strip() for item in raw.split(",")]


class Command(BaseCommand):
    """Checksum the file, read its signature from the graph, store it as the next version (staged)."""

    help = "Register an ONNX file as a new version; it is recorded as having no training lineage."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "file", help="Path to an ONNX file: typed inputs with a dynamic batch axis (float, int, uint8, bool)."
        )
        parser.add_argument("--name", required=True)
        parser.add_argument("--value-min", type=float, default=None, help="Smallest raw input value (default 0).")
        parser.add_argument(
            "--value-max",
            type=float,
            default=None,
            help="Largest raw input value (e.g. 16 or 255); required unless the file records it.",
        )
        parser.add_argument(
            "--labels",
            default=None,
            help="Class labels: '0,1,2', 'setosa,versicolor' or a JSON list (default 0..n-1); classifiers only.",
        )
        parser.add_argument(
            "--output-kind",
            default=None,
            choices=list(OutputKind.CHOICES),
            help="How the primary output reads (default: from the file, else its shape).",
        )
        parser.add_argument("--plausible-min", type=float, default=None, help="Regression: lowest plausible value.")
        parser.add_argument("--plausible-max", type=float, default=None, help="Regression: highest plausible value.")
        parser.add_argument("--region", default="eu")
        parser.add_argument("--risk-tier", default=RiskTier.LIMITED, choices=RiskTier.values)
        parser.add_argument("--model-card", default="", help="Model card text, or @FILE to read it from a file.")
        parser.add_argument(
            "--reference",
            default=None,
            help="Reference data (.npy, .npz or .csv, one instance per row) for the version's reference profile; "
            "without it the version has no reference profile and drift is not measured.",
        )
        parser.add_argument(
            "--card",
            default=None,
            help="Structured model card fields as a JSON object, or @FILE.json (intended_purpose, "
            "out_of_scope_uses, training_data, metrics_per_class, limitations, risk_rationale).",
        )
        parser.add_argument("--activate", action="store_true")

    def handle(self, *args, **options) -> None:
        path = Path(options["file"])
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}") from exc
        card = options["model_card"]
        if card.startswith("@"):
            card = Path(card[1:]).read_text()
        try:
            labels = _labels(options["labels"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--labels is not valid JSON: {exc}") from exc
        actor = "command:register_model"
        try:
            fields = card_fields_read(options["card"])
            reference = labels_ref = None
            if options["reference"]:
                reference, labels_ref = reference_data_load(options["reference"])
            version = model_version_register(
                name=options["name"],
                data=data,
                actor=actor,
                value_min=options["value_min"],
                value_max=options["value_max"],
                labels=labels,
                output_kind=options["output_kind"],
                plausible_min=options["plausible_min"],
                plausible_max=options["plausible_max"],
                risk_tier=options["risk_tier"],
                region=options["region"],
                model_card=card or f"# {options['name']}\n\nRegistered from {path.name}; no training lineage.\n",
                card=fields,
                reference=reference,
                reference_labels=labels_ref,
                reference_source=f"reference file {Path(options['reference']).name}" if reference is not None else "",
            )
            self.stdout.write(self.style.SUCCESS(f"registered {describe_version(version)}"))
            if options["activate"]:
                version = model_version_activate(version=version, actor=actor)
                self.stdout.write(self.style.SUCCESS(f"activated {version.ref}"))
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
