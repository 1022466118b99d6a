"""``manage.py verify_audit``: recompute every sealed block; exit non-zero naming the first problem."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.errors import InvalidExportFilter
from audit.selectors import ExportFilters
from audit.services import audit_verify


class Command(BaseCommand):
    help = (
        "Verify the sealed audit trail: block signatures, hash chain, Merkle roots and every event. "
        "Exits 0 when everything verifies; otherwise 1, naming the first altered, missing, inserted or "
        "reordered event and its block."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--since", help="Only blocks holding events at or after this ISO date/date-time.")
        parser.add_argument("--max-problems", type=int, default=100, help="Problems to list (all are counted).")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            since = ExportFilters.from_mapping({"since": options["since"]}).since
        except InvalidExportFilter as exc:
            raise CommandError(str(exc), returncode=2) from exc
        report = audit_verify(since=since, max_problems=options["max_problems"])
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "ok": report.ok,
                        "blocks_verified": report.blocks_verified,
                        "events_verified": report.events_verified,
                        "gap_seqs": report.gap_seqs,
                        "unsealed_events": report.unsealed_events,
                        "purged": [asdict(p) for p in report.purged],
                        "problem_count": report.problem_count,
                        "problems": [asdict(p) for p in report.problems],
                    },
                    indent=1,
                )
            )
        else:
            self.stdout.write(report.summary())
        if report.ok:
            if not options["json"]:
                self.stdout.write(self.style.SUCCESS("OK: every sealed block and event verifies."))
            return
        first = report.first_problem
        for problem in report.problems[1:]:
            self.stderr.write(f"  also: {problem.message}")
        raise CommandError(
            f"FAILED: {first.message} ({report.problem_count} problem(s) in total)",
            returncode=1,
        )
