"""``manage.py admin_otp_enroll <username>``: give a staff user a TOTP device for the admin login."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    """Create a confirmed TOTP device and print its ``otpauth://`` URI (and a QR code for a terminal)."""

    help = "Enroll a staff user's authenticator app for the two-factor admin login."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="authenticator", help="A label for the device.")
        parser.add_argument("--replace", action="store_true", help="Delete the user's existing TOTP devices first.")
        parser.add_argument("--no-qr", action="store_true", help="Print only the URI.")

    def handle(self, *args: Any, **options: Any) -> None:
        from django_otp.plugins.otp_totp.models import TOTPDevice

        from audit.services import audit_change_record

        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None or not user.is_staff:
            raise CommandError(f"No staff user named {options['username']!r}.")
        if options["replace"]:
            TOTPDevice.objects.filter(user=user).delete()
        device = TOTPDevice.objects.create(user=user, name=options["name"], confirmed=True)
        audit_change_record(
            actor="command:admin_otp_enroll",
            action="admin.otp_enroll",
            target=f"user:{user.get_username()}",
            after={"device": device.persistent_id, "replaced": bool(options["replace"])},
        )
        self.stdout.write(device.config_url)
        if not options["no_qr"]:
            import qrcode

            qr = qrcode.QRCode(border=1)
            qr.add_data(device.config_url)
            qr.print_ascii(out=self.stdout, invert=True)
