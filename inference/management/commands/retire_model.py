"""``manage.py retire_model NAME VERSION``: withdraw a version for good."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from inference.selectors import model_version_get
from inference.services import model_version_retire


class Command(BaseCommand):
    """Retire a staged version; the active one must be replaced or rolled back first."""

    help = "Retire VERSION of NAME (it can no longer be activated or pinned by clients)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("version", type=int)

    def handle(self, *args, **options) -> None:
        try:
            target = model_version_get(name=options["name"], version=options["version"])
            version = model_version_retire(version=target, actor="command:retire_model")
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(self.style.SUCCESS(f"{version.ref} is retired"))
