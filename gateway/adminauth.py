"""Admin login that resists guessing: lockouts (django-axes) and a TOTP second factor (django-otp).

* **Lockout.** ``axes`` counts failed logins by username and, separately,
  by client address; past ``AXES_FAILURE_LIMIT`` either is locked out for
  ``AXES_COOLOFF_TIME`` (429).  Each lockout is one audit event
  (``admin.lockout``).  Staff unlock an account or address by deleting its
  access attempts in the admin (*Axes > Access attempts*) or with
  ``manage.py axes_reset_username <name>`` / ``axes_reset_ip <address>``.
* **Second factor.** A staff user with a confirmed TOTP device must enter
  its current code on the login form; superusers must have one when
  ``ADMIN_OTP_REQUIRED_FOR_SUPERUSERS`` (the default when
  ``DJANGO_ENV=production``).  A session that logged in without the code
  is not let into the admin (``has_permission``).  Devices are enrolled with
  ``manage.py admin_otp_enroll <username>`` (prints the ``otpauth://`` URI
  and a QR code) or in the admin (*TOTP devices*).  A wrong code counts as a
  failed login for the lockout.
"""

from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin import AdminSite
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest
from django_otp import match_token, user_has_device

logger = logging.getLogger("gateway.admin")

NO_ADMIN_ACCESS = (
    "The password is correct, but the account “%(username)s” has no access to the admin. "
    "Ask an administrator to grant it staff access (and the permissions your role needs)."
)


def otp_required_for(user: Any) -> bool:
    """True when ``user`` must present a TOTP code: a confirmed device, or a superuser where it is mandatory."""
    if not getattr(user, "is_authenticated", False):
        return False
    if user_has_device(user, confirmed=True):
        return True
    return bool(user.is_superuser and settings.ADMIN_OTP_REQUIRED_FOR_SUPERUSERS)


class AdminLoginForm(AdminAuthenticationForm):
    """Username, password and -- for staff who have it -- the current authenticator code."""

    otp_token = forms.CharField(
        required=False,
        label="Authenticator code",
        help_text="The 6-digit code from your authenticator app (staff with two-factor login).",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "otp_required": "Enter the current code from your authenticator app.",
        "otp_not_enrolled": (
            "Superusers must log in with a second factor: enroll a device with "
            "'manage.py admin_otp_enroll <username>' first."
        ),
    }

    def confirm_login_allowed(self, user: Any) -> None:
        """A non-staff user with the right password is told the account lacks admin access.

        Django's default says "enter the correct username and password for a
        staff account", which sends people hunting for a password that is not wrong.
        """
        if user.is_active and not user.is_staff:
            raise forms.ValidationError(
                NO_ADMIN_ACCESS, code="no_admin_access", params={"username": user.get_username()}
            )
        super().confirm_login_allowed(user)

    def clean(self) -> dict[str, Any]:
        """Password first (axes counts its failures), then the second factor where it applies."""
        cleaned = super().clean()
        user = self.get_user()
        if user is None or not otp_required_for(user):
            return cleaned
        if not user_has_device(user, confirmed=True):
            raise forms.ValidationError(self.error_messages["otp_not_enrolled"], code="otp_not_enrolled")
        token = (cleaned.get("otp_token") or "").strip()
        device = match_token(user, token) if token else None
        if device is None:
            # A right password with a wrong code is still a failed login: the lockout counts it.
            user_login_failed.send(
                sender=__name__,
                credentials={"username": cleaned.get("username")},
                request=self.request,
            )
            raise forms.ValidationError(self.error_messages["otp_required"], code="otp_required")
        # django_otp's user_logged_in receiver marks the session verified with this device.
        user.otp_device = device
        return cleaned


class GatewayAdminSite(AdminSite):
    """The admin site: the two-factor login form, and no admin page for a session that skipped it."""

    login_form = AdminLoginForm
    login_template = "admin/login_otp.html"
    site_header = "MaaS Gateway administration"
    site_title = "MaaS Gateway"
    index_title = "Tenants, policies, models and the audit trail"
    # The gateway has no public home page; its developer-facing start is the API reference.
    site_url = "/v1/docs/"
    index_template = "admin/maas_index.html"
    # At 1366 px the navigation sidebar and a list's filters together left ~700 px for the results;
    # the breadcrumbs and the index lead everywhere the sidebar did.
    enable_nav_sidebar = False

    def has_permission(self, request: HttpRequest) -> bool:
        """Active staff, verified by a TOTP device whenever :func:`otp_required_for` says so."""
        if not super().has_permission(request):
            return False
        user = request.user
        if not otp_required_for(user):
            return True
        is_verified = getattr(user, "is_verified", None)
        return bool(is_verified and is_verified())


def admin_lockout_record(*, username: str, ip_address: str | None) -> None:
    """One audit event per admin lockout (who, from where); the lockout itself is axes'."""
    from audit.services import audit_event_record

    audit_event_record(
        event_type="request",
        action="admin.lockout",
        actor=f"staff:{username}" if username else "",
        client_ip=ip_address,
        method="POST",
        path="/admin/login/",
        http_status=settings.AXES_HTTP_RESPONSE_CODE,
        error_code="admin_locked_out",
        detail={"username": username, "ip_address": ip_address, "failure_limit": settings.AXES_FAILURE_LIMIT},
    )


def on_user_locked_out(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """``axes.signals.user_locked_out`` receiver: records the lockout (never fails the login response)."""
    try:
        admin_lockout_record(username=kwargs.get("username") or "", ip_address=kwargs.get("ip_address"))
    except Exception:  # the lockout stands even when the trail is down; the failure is logged
        logger.error("admin lockout could not be audited", exc_info=True)
