"""``manage.py ensure_demo_tenant``: the demo tenant and a working key, idempotently.

Creates the ``standard`` plan and the ``demo`` tenant (region ``eu``, identity
verified, purposes research/evaluation/demo) when missing, and makes sure
``<VAR_DIR>/demo-api-key`` (mode 0600) holds a key with every scope that
authenticates: a stored key that still works is reused, otherwise a new one is
issued.  The key is printed alone on the last line.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand

from core.env import VAR_DIR
from tenants.management.commands._common import actor_for, call
from tenants.services import demo_tenant_ensure

DEFAULT_KEY_FILE = VAR_DIR / "demo-api-key"


class Command(BaseCommand):
    """Ensure the demo tenant and its key file."""

    help = "Ensure the demo tenant exists and <VAR_DIR>/demo-api-key holds a working key."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--key-file", dest="key_file", default=str(DEFAULT_KEY_FILE), help="Where to keep the key.")

    def handle(self, *args, **options) -> None:
        key_file = Path(options["key_file"])
        demo = call(demo_tenant_ensure, actor=actor_for(__name__), key_file=key_file)
        state = "issued a new key" if demo.key_created else "reusing the stored key"
        self.stderr.write(f"demo tenant {demo.tenant.slug} ({state}; kept in {key_file}):")
        if not demo.tenant.is_active:
            self.stderr.write(self.style.WARNING(f"the demo tenant is suspended: {demo.tenant.suspended_reason}"))
        self.stdout.write(demo.raw_key)
