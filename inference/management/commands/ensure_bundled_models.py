"""``manage.py ensure_bundled_models``: the regression and image models next to ``digits``, trained when missing.

Run by ``manage.py bootstrap`` (``make setup``).  For each bundled model
(``diabetes``, ``digit-images``; see :mod:`inference.training.bundled`) with
an active version whose file verifies, this prints it and moves on without
importing TensorFlow; otherwise it trains the model (seconds), registers it
with its metrics, lineage and model card, and activates it only if its
quality gate passes.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from inference.management.commands._active import active_version_reusable
from inference.management.commands.train_model import describe_version
from inference.services import model_version_activate, model_version_register

ACTOR = "command:ensure_bundled_models"


class Command(BaseCommand):
    """Idempotent: reuse good active versions, otherwise train, gate and activate."""

    help = "Make sure the bundled regression (diabetes) and image (digit-images) models are active."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--only", choices=["diabetes", "digit-images"], help="Just this model.")

    def handle(self, *args, **options) -> None:
        from inference.training.bundled import TRAINERS

        for name, (train, gate, gate_text) in TRAINERS.items():
            if options["only"] and name != options["only"]:
                continue
            if active_version_reusable(name=name, stdout=self.stdout, stderr=self.stderr):
                continue
            self.stdout.write(f"==> training {name!r} (scikit-learn data, TensorFlow, tf2onnx)")
            try:
                result = train()
                version = model_version_register(
                    name=name,
                    data=result.onnx_bytes,
                    actor=ACTOR,
                    metrics=result.metrics,
                    lineage=result.lineage,
                    model_card=result.model_card,
                    action="model.train",
                    **result.registration,
                )
            except DomainError as exc:
                raise CommandError(exc.detail) from exc
            except Exception as exc:  # a TrainingError or ParityError: refuse, never activate
                raise CommandError(f"{name}: {exc}") from exc
            if not gate(result.metrics):
                raise CommandError(
                    f"{version.ref} misses its quality gate ({gate_text}): {result.metrics}; it stays staged."
                )
            version = model_version_activate(version=version, actor=ACTOR)
            self.stdout.write(self.style.SUCCESS(f"activated {describe_version(version)}"))
