"""``manage.py db_grants``: give the application role exactly the privileges it needs (PostgreSQL).

Run by ``manage.py bootstrap`` after migrating as the owner role.  With no
``DATABASE_OWNER_URL`` one role both migrates and serves: there is nothing to
grant, and the command says that the audit tables are then protected by the
triggers only (an owner can always disable its own triggers).
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from gateway.db_roles import connected_as_owner, db_roles_grant


class Command(BaseCommand):
    """Grant the application role of DATABASE_URL its privileges, as the owner role of DATABASE_OWNER_URL."""

    help = "Create (when possible) and grant the application database role; PostgreSQL with DATABASE_OWNER_URL."

    def handle(self, *args, **options) -> None:
        if not settings.DATABASE_IS_POSTGRES:
            self.stdout.write("database roles: SQLite has none (the audit triggers still refuse UPDATE and DELETE)")
            return
        if not settings.DATABASE_OWNER:
            user = settings.DATABASES["default"].get("USER") or "(default)"
            self.stdout.write(
                self.style.WARNING(
                    f"database roles: DATABASE_OWNER_URL is not set, so the role {user!r} both migrates and serves; "
                    "set it to run the gateway as an application role without UPDATE/DELETE on the audit trail"
                )
            )
            return
        default = settings.DATABASES["default"]
        app_role, app_password = default["USER"], default.get("PASSWORD") or None
        with connected_as_owner():
            report = db_roles_grant(app_role=app_role, app_password=app_password)
        created = " (created)" if report.created_role else ""
        self.stdout.write(
            f"database roles: {report.app_role}{created} granted {report.tables} tables, "
            f"SELECT/INSERT only on {', '.join(report.sealed)}"
        )
