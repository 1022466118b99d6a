"""``manage.py audit_chain_start --reason``: deliberately start a new audit chain (a new epoch).

The sealer never starts over by itself.  When the database's chain head and
the checkpoint log disagree (a restore from backup, a trail from before
checkpoints existed) the operator decides, and this command records that
decision as a signed chain-start record in the checkpoint log (and its sinks)
plus an ``audit.chain_start`` event.  Every verifier will see it, with its
reason, forever.
"""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.errors import AuditChainStartRefused, AuditCheckpointWriteFailed
from audit.services.checkpoints import audit_chain_start


class Command(BaseCommand):
    help = "Start a new audit chain epoch at the database's current head (signed, with a reason)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--reason", required=True, help="Why the chain starts over (recorded and signed).")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = f"command:audit_chain_start ({getpass.getuser()})"
        try:
            record = audit_chain_start(reason=options["reason"], actor=actor)
        except (AuditChainStartRefused, AuditCheckpointWriteFailed) as exc:
            raise CommandError(str(exc.detail), returncode=2) from exc
        previous = record["previous"]
        left = f"; left epoch {previous['epoch']} at checkpoint {previous['number']}" if previous else ""
        self.stdout.write(
            self.style.WARNING(
                f"Started audit chain epoch {record['epoch']} after block {record['after_block']} "
                f"(seq {record['after_last_seq']}){left}. Reason: {record['reason']}"
            )
        )
