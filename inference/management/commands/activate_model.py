"""``manage.py activate_model NAME VERSION`` (or ``--previous`` to roll back)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from inference.selectors import model_version_get
from inference.services import model_version_activate, model_version_rollback


class Command(BaseCommand):
    """Activate a version; every gateway process serves it within about a second, without a restart."""

    help = "Activate VERSION of NAME, or roll back to the previously active version with --previous."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("version", type=int, nargs="?")
        parser.add_argument("--previous", action="store_true", help="Roll back to the previously active version.")

    def handle(self, *args, **options) -> None:
        if (options["version"] is None) == (not options["previous"]):
            raise CommandError("Give either a VERSION or --previous.")
        actor = "command:activate_model"
        try:
            if options["previous"]:
                version = model_version_rollback(name=options["name"], actor=actor)
                self.stdout.write(self.style.SUCCESS(f"rolled back: {version.ref} is active"))
            else:
                target = model_version_get(name=options["name"], version=options["version"])
                version = model_version_activate(version=target, actor=actor)
                self.stdout.write(self.style.SUCCESS(f"{version.ref} is active"))
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
