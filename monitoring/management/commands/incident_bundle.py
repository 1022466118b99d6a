"""``manage.py incident_bundle ID --output FILE``: build an incident's regulator bundle now and write it to FILE."""

from __future__ import annotations

import getpass
import os
import shutil
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from monitoring.selectors import incident_get
from monitoring.services import incident_bundle_build, incident_bundle_request


class Command(BaseCommand):
    help = (
        "Build the regulator bundle of an incident (zip: record, timeline, model card, policies, monitoring "
        "windows, audit events with inclusion proofs and checkpoint, signed manifest) and write it to --output."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("incident_id", help="The incident's id.")
        parser.add_argument("--output", required=True, help="File to write (a .zip).")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = f"command:incident_bundle ({getpass.getuser()})"
        try:
            incident = incident_get(incident_id=options["incident_id"])
            bundle = incident_bundle_request(incident=incident, actor=actor, enqueue=False)
            bundle = incident_bundle_build(bundle_id=bundle.pk)
        except DomainError as exc:
            raise CommandError(exc.detail, returncode=2) from exc
        output = Path(options["output"])
        output.parent.mkdir(parents=True, exist_ok=True)
        # The bundle holds personal data (request audit events): readable by this account only.
        with (
            open(bundle.file_path, "rb") as src,
            os.fdopen(os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as dst,
        ):
            shutil.copyfileobj(src, dst)
        self.stdout.write(
            self.style.SUCCESS(
                f"Bundle #{bundle.pk} of incident #{incident.pk} written to {output} (sha256 {bundle.sha256})."
            )
        )
