"""``manage.py seal_audit``: seal every sealable audit event now (beat does it every minute)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.errors import AuditChainMismatch, AuditCheckpointWriteFailed
from audit.services import audit_seal


class Command(BaseCommand):
    help = "Seal unsealed audit events into signed Merkle blocks."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--max-blocks", type=int, default=None, help="Stop after this many blocks.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = audit_seal(max_blocks=options["max_blocks"])
        except (AuditChainMismatch, AuditCheckpointWriteFailed) as exc:
            raise CommandError(f"REFUSED: {exc.detail}", returncode=1) from exc
        if not result.blocks:
            self.stdout.write("Nothing to seal (events younger than the safety lag wait for the next run).")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Sealed {len(result.blocks)} block(s) {result.blocks[0]}-{result.blocks[-1]}: "
                f"{result.events} events, {result.gap_seqs} rolled-back sequence numbers recorded as gaps."
            )
        )
