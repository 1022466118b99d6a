"""``manage.py rollout_status NAME [--json]``: the rollout in progress (or the last one) with per-version figures."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from inference.rollout_metrics import rollout_figures
from inference.selectors import rollout_current_get

COLUMNS = ("version", "role", "requests", "error_rate", "latency_ms", "latency_p95_ms", "review_rate", "agreement")


class Command(BaseCommand):
    """Show the rollout and each version's error rate, latency, review-flag rate and agreement with stable."""

    help = "Show NAME's active rollout (or its most recent one) with per-version figures from the audit trail."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--json", action="store_true", help="One JSON object instead of a table.")

    def handle(self, *args, **options) -> None:
        name = options["name"]
        rollout = rollout_current_get(name=name)
        if rollout is None:
            raise CommandError(f"Model {name!r} has no rollout.")
        figures = [figure.as_dict() for figure in rollout_figures(rollout=rollout).values()]
        if options["json"]:
            record = rollout.as_record() | {
                "created_by": rollout.created_by,
                "created_at": rollout.created_at.isoformat(),
                "reason": rollout.reason,
                "ended_by": rollout.ended_by,
                "ended_at": rollout.ended_at.isoformat() if rollout.ended_at else None,
                "end_reason": rollout.end_reason,
                "thresholds": {
                    "max_error_rate": rollout.max_error_rate,
                    "max_latency_ms": rollout.max_latency_ms,
                    "max_review_rate": rollout.max_review_rate,
                    "min_agreement": rollout.min_agreement,
                    "min_requests": rollout.min_requests,
                },
                "versions": figures,
            }
            self.stdout.write(json.dumps(record, indent=2, sort_keys=True))
            return
        canary = (
            f"canary v{rollout.canary_version} at {rollout.canary_percent:g} %"
            if rollout.canary_version
            else "no canary"
        )
        self.stdout.write(
            f"rollout #{rollout.pk} of {name} ({rollout.state}): stable v{rollout.stable_version}, {canary}, "
            f"shadows {list(rollout.shadow_versions) or 'none'}; started {rollout.created_at:%Y-%m-%d %H:%M} "
            f"by {rollout.created_by}"
            + (
                f"; ended {rollout.ended_at:%Y-%m-%d %H:%M} by {rollout.ended_by}: {rollout.end_reason}"
                if rollout.ended_at
                else ""
            )
        )
        self.stdout.write("  ".join(f"{c:>14}" for c in COLUMNS))
        for figure in figures:
            self.stdout.write("  ".join(f"{'-' if figure[c] is None else figure[c]!s:>14}" for c in COLUMNS))
