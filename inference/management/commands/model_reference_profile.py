"""``manage.py model_reference_profile NAME VERSION FILE``: give a version a reference profile from data."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from inference.reference_data import reference_data_load
from inference.selectors import model_version_get
from inference.services import model_version_reference_set


class Command(BaseCommand):
    """Run the version on the reference set and store the counts live statistics are compared with."""

    help = "Compute a version's reference profile from a .npy, .npz or .csv file of instances (replaces any earlier)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("version", type=int)
        parser.add_argument("file", help="Reference instances: .npy, .npz (x/x_test, optional y/y_test) or .csv.")

    def handle(self, *args, **options) -> None:
        try:
            version = model_version_get(name=options["name"], version=options["version"])
            reference, labels = reference_data_load(options["file"])
            version = model_version_reference_set(
                version=version,
                actor="command:model_reference_profile",
                reference=reference,
                reference_labels=labels,
                source=f"reference file {Path(options['file']).name}",
            )
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        profile = version.reference_profile
        self.stdout.write(
            self.style.SUCCESS(
                f"{version.ref}: reference profile of {profile['instances']} instances (digest {profile['digest']})"
            )
        )
