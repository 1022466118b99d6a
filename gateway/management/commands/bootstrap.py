"""``manage.py bootstrap``: the idempotent part of ``make setup``.

Migrates (as the owner role when ``DATABASE_OWNER_URL`` is set, then grants
the application role its privileges: ``db_grants``), collects the static files
(admin, API docs) that WhiteNoise serves, makes sure the default model and the bundled regression and image
models are trained and active, makes sure the
demo tenant and its key exist, and creates a superuser only when
``DJANGO_SUPERUSER_PASSWORD`` is set.  Each step reuses what exists, so a
second run takes seconds.
"""

from __future__ import annotations

import os

import dj_database_url
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from gateway.db_roles import connected_as_owner, db_roles_create
from gateway.static_collect import static_collect


class Command(BaseCommand):
    """Bring a fresh or existing installation to a servable state."""

    help = "Migrate, ensure the default model and demo tenant, optionally create a superuser."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--skip-model", action="store_true", help="Do not train the default or bundled models.")
        parser.add_argument(
            "--collect-static",
            action="store_true",
            help="Collect the static files even when the collected copy is newer than every source file.",
        )

    def handle(self, *args, **options) -> None:
        if settings.DATABASE_ADMIN_URL and settings.DATABASE_OWNER:
            self.stdout.write("==> database roles: owner and application")
            report = db_roles_create(
                admin=dj_database_url.parse(settings.DATABASE_ADMIN_URL),
                owner=settings.DATABASE_OWNER,
                app=settings.DATABASES["default"],
            )
            created = ", ".join(report.created) or "none (both exist)"
            self.stdout.write(f"    created: {created}")
        self.stdout.write("==> migrating the database")
        with connected_as_owner():
            call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("==> database roles")
        call_command("db_grants", stdout=self.stdout)
        self.stdout.write("==> collecting static files (admin, API docs)")
        if not static_collect(force=options["collect_static"]):
            self.stdout.write("    current: none changed since the last collection (--collect-static forces one)")
        if not options["skip_model"]:
            self.stdout.write("==> default model")
            call_command("ensure_default_model")
            self.stdout.write("==> bundled regression and image models")
            call_command("ensure_bundled_models")
        self.stdout.write("==> demo tenant")
        call_command("ensure_demo_tenant")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        if password:
            username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
            user_model = get_user_model()
            if not user_model.objects.filter(username=username).exists():
                user_model.objects.create_superuser(
                    username=username, email=os.environ.get("DJANGO_SUPERUSER_EMAIL", ""), password=password
                )
                self.stdout.write(f"==> superuser {username!r} created")
