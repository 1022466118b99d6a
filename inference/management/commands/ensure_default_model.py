"""``manage.py ensure_default_model``: an active, verified default model, training one only when needed.

Run by ``manage.py bootstrap`` (``make setup``).  When the default model has
an active version whose file verifies, this prints it and returns in well
under a second without importing TensorFlow; otherwise it trains the default
configuration, and activates the result only if its held-out accuracy
reaches ``--min-accuracy``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from inference.management.commands._active import active_version_reusable
from inference.management.commands._progress import epoch_progress_printer
from inference.management.commands.train_model import describe_version
from inference.services import model_version_activate, model_version_train

ACTOR = "command:ensure_default_model"


class Command(BaseCommand):
    """Idempotent: reuse a good active version, otherwise train and activate one."""

    help = "Make sure DEFAULT_MODEL_NAME has an active, verified version (trains one if not)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--min-accuracy", type=float, default=0.95, help="Refuse to activate below this.")

    def handle(self, *args, **options) -> None:
        name = settings.DEFAULT_MODEL_NAME
        if active_version_reusable(name=name, stdout=self.stdout, stderr=self.stderr, label="default model"):
            return
        self.stdout.write(f"==> training the default model {name!r} (scikit-learn digits, default settings)")
        try:
            version = model_version_train(actor=ACTOR, name=name, progress=epoch_progress_printer(self.stdout))
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        accuracy = version.accuracy or 0.0
        if accuracy < options["min_accuracy"]:
            raise CommandError(
                f"{version.ref} reached held-out accuracy {accuracy:.4f}, below {options['min_accuracy']}; "
                "it stays staged."
            )
        try:
            version = model_version_activate(version=version, actor=ACTOR)
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(self.style.SUCCESS(f"activated {describe_version(version)}"))
