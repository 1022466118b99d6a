"""``manage.py promote_model NAME``: make the rollout's canary the active version and end the rollout."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from inference.services.rollouts import rollout_promote


class Command(BaseCommand):
    """Promote the canary: everyone is served it within about a second; the rollout (and its shadows) ends."""

    help = "Activate the canary of NAME's rollout for everyone and end the rollout."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--reason", default="", help="Why; kept in the audit record.")

    def handle(self, *args, **options) -> None:
        try:
            rollout = rollout_promote(name=options["name"], actor="command:promote_model", reason=options["reason"])
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(
            self.style.SUCCESS(f"rollout #{rollout.pk} promoted: {rollout.name}@{rollout.canary_version} is active")
        )
