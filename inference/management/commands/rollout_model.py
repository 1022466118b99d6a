"""``manage.py rollout_model NAME VERSION --canary-percent P`` or ``--shadow``: start or change a rollout."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from inference.services.rollouts import rollout_start


class Command(BaseCommand):
    """Put a version on canary (a sticky share of callers) or on shadow (runs unseen after each answer)."""

    help = (
        "Serve VERSION of NAME to P %% of eligible API keys (--canary-percent P; again with the same VERSION to "
        "ramp), or run it as a shadow on every answered batch (--shadow). Every gateway process follows within "
        "about a second."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("version", type=int)
        mode = parser.add_mutually_exclusive_group(required=True)
        # Parsed by the service, so every surface refuses the same bad values with the same message.
        mode.add_argument("--canary-percent", dest="canary_percent", help="Share of eligible keys, above 0 to 100.")
        mode.add_argument("--shadow", action="store_true", help="Run VERSION unseen after each answer.")
        parser.add_argument("--reason", default="", help="Why; kept in the audit record.")
        parser.add_argument("--max-error-rate", type=float, help="Roll back above this 5xx share (0-1).")
        parser.add_argument("--max-latency-ms", type=float, help="Roll back above this mean canary latency.")
        parser.add_argument("--max-review-rate", type=float, help="Roll back above this review-flag share (0-1).")
        parser.add_argument("--min-agreement", type=float, help="Roll back below this agreement with stable (0-1).")
        parser.add_argument("--min-requests", type=int, help="Requests a version needs before it is judged.")

    def handle(self, *args, **options) -> None:
        try:
            rollout = rollout_start(
                name=options["name"],
                version=options["version"],
                actor="command:rollout_model",
                canary_percent=options["canary_percent"],
                shadow=options["shadow"],
                reason=options["reason"],
                max_error_rate=options["max_error_rate"],
                max_latency_ms=options["max_latency_ms"],
                max_review_rate=options["max_review_rate"],
                min_agreement=options["min_agreement"],
                min_requests=options["min_requests"],
            )
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        canary = (
            f"canary {rollout.name}@{rollout.canary_version} at {rollout.canary_percent:g} %"
            if rollout.canary_version is not None
            else "no canary"
        )
        shadows = ", ".join(f"{rollout.name}@{v}" for v in rollout.shadow_versions) or "none"
        self.stdout.write(
            self.style.SUCCESS(
                f"rollout #{rollout.pk}: stable {rollout.name}@{rollout.stable_version}, {canary}, shadows: {shadows}"
            )
        )
