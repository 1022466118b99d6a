"""``manage.py train_model``: train the digit MLP, export it to ONNX, register it, optionally activate it."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from inference.management.commands._progress import epoch_progress_printer
from inference.models import RiskTier
from inference.services import model_version_train


def describe_version(version) -> str:
    """One line per registered version: accuracy, parity and checksum."""
    metrics = version.metrics or {}
    parity = metrics.get("parity") or {}
    parts = [f"{version.ref}"]
    if "accuracy" in metrics:
        parts.append(f"held-out accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}")
    if "mae" in metrics:
        parts.append(f"held-out MAE {metrics['mae']:.1f}, R² {metrics['r2']:.3f}")
    if parity:
        parts.append(f"parity max|ORT-TF| {parity['max_abs_diff']:.1e}")
    parts.append(f"sha256 {version.sha256[:12]}")
    parts.append(f"file {version.absolute_path()}")
    return "; ".join(parts)


class Command(BaseCommand):
    """Train with TensorFlow (the optional 'train' extra); the result is checked by the parity gate."""

    help = "Train the digit classifier, export it with tf2onnx, check parity, register it (optionally activate)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--name", default="digits", help="Model name (default: digits).")
        parser.add_argument("--epochs", type=int, default=30)
        parser.add_argument("--batch-size", type=int, default=32)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--data", default=None, help="Keras MNIST .npz (x_train, y_train, x_test, y_test).")
        parser.add_argument("--activate", action="store_true", help="Activate the new version.")
        parser.add_argument("--region", default="eu", help="Deployment region recorded for policy (default: eu).")
        parser.add_argument("--risk-tier", default=RiskTier.LIMITED, choices=RiskTier.values)
        parser.add_argument(
            "--risk-rationale",
            default="",
            help="Why this risk tier (model card); required to activate at risk tier 'high'.",
        )

    def handle(self, *args, **options) -> None:
        data = options["data"] or "scikit-learn digits"
        self.stdout.write(
            f"==> training {options['name']!r}: {options['epochs']} epochs, batch {options['batch_size']}, "
            f"seed {options['seed']}, data {data}"
        )
        try:
            version = model_version_train(
                actor="command:train_model",
                name=options["name"],
                epochs=options["epochs"],
                batch_size=options["batch_size"],
                seed=options["seed"],
                data_path=options["data"],
                region=options["region"],
                risk_tier=options["risk_tier"],
                risk_rationale=options["risk_rationale"],
                activate=options["activate"],
                progress=epoch_progress_printer(self.stdout),
            )
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(self.style.SUCCESS(f"registered {describe_version(version)}"))
        if version.status == version.Status.ACTIVE:
            self.stdout.write(self.style.SUCCESS(f"activated {version.ref}"))
        else:
            self.stdout.write(f"staged; activate with: manage.py activate_model {version.name} {version.version}")
