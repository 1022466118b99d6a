"""``manage.py verify_audit``: recompute sealed blocks; exit non-zero naming the first problem.

Incremental by default: blocks after the one the last recorded passing
verification covered (a full pass when there is no trustworthy record);
``--full`` re-reads every event.  The outcome is recorded in the trail as an
``audit.verify`` event (not for ``--since`` passes, or with ``--no-record``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audit.errors import InvalidExportFilter
from audit.selectors import ExportFilters
from audit.services import audit_verify
from audit.services.checkpoints import checkpoint_in_trail, checkpoint_load_file
from audit.services.oversight import audit_verification_record
from audit.services.verification import CHECKPOINT, VerifyProblem


class Command(BaseCommand):
    help = (
        "Verify the sealed audit trail: block signatures, hash chain, Merkle roots and every event, then the "
        "chain against the checkpoint log outside the database (and any --checkpoint saved earlier). "
        "Incremental from the last recorded passing verification unless --full. "
        "Exits 0 when everything verifies; otherwise 1, naming the first altered, missing, inserted or "
        "reordered event and its block."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--since", help="Only blocks holding events at or after this ISO date/date-time.")
        parser.add_argument(
            "--full", action="store_true", help="Re-read every sealed block and event, ignoring the recorded state."
        )
        parser.add_argument(
            "--no-record", action="store_true", help="Do not record the outcome in the trail (read-only check)."
        )
        parser.add_argument("--max-problems", type=int, default=100, help="Problems to list (all are counted).")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument(
            "--checkpoint",
            action="append",
            default=[],
            metavar="FILE",
            help="A checkpoint saved earlier (by an auditor, a tenant, a witness): the trail must still contain it. "
            "May be repeated.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            since = ExportFilters.from_mapping({"since": options["since"]}).since
        except InvalidExportFilter as exc:
            raise CommandError(str(exc), returncode=2) from exc
        started = timezone.now()
        report = audit_verify(since=since, full=options["full"], max_problems=options["max_problems"])
        for path in options["checkpoint"]:
            try:
                document = checkpoint_load_file(Path(path))
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read checkpoint {path}: {exc}", returncode=2) from exc
            problem = checkpoint_in_trail(document=document)
            number = document.get("number") if isinstance(document, dict) else None
            if problem is None:
                self.stdout.write(f"Checkpoint {path} (block {number}) is in the trail.")
            else:
                report.add(VerifyProblem(CHECKPOINT, number, None, None, f"{path}: {problem}"))
        if since is None and not options["no_record"]:
            audit_verification_record(report=report, actor="system:verify_audit", started=started)
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "ok": report.ok,
                        "mode": report.mode,
                        "from_block": report.from_block,
                        "fallback": report.fallback,
                        "blocks_verified": report.blocks_verified,
                        "events_verified": report.events_verified,
                        "gap_seqs": report.gap_seqs,
                        "unsealed_events": report.unsealed_events,
                        "purged": [asdict(p) for p in report.purged],
                        "checkpoints_checked": report.checkpoints_checked,
                        "chain_restarts": report.chain_restarts,
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
