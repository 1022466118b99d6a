"""``manage.py rollback_model NAME --reason ...``: end the rollout, or undo the last activation."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from inference.models import ModelRollout
from inference.services.rollouts import rollout_rollback


class Command(BaseCommand):
    """Everyone back on stable (rollout in progress) or on the previously active version (none), audited."""

    help = (
        "End NAME's rollout so every caller gets the stable version again; with no rollout in progress, "
        "re-activate the version that was active before the current one. A reason is required."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--reason", required=True, help="Why; kept in the audit record.")

    def handle(self, *args, **options) -> None:
        try:
            result = rollout_rollback(name=options["name"], actor="command:rollback_model", reason=options["reason"])
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        if isinstance(result, ModelRollout):
            self.stdout.write(
                self.style.SUCCESS(
                    f"rollout #{result.pk} rolled back: {result.name}@{result.stable_version} serves everyone"
                )
            )
        else:
            self.stdout.write(self.style.SUCCESS(f"rolled back: {result.ref} is active"))
