"""The admin site's own look and sign-in: names, where "View site" leads, and honest login messages."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm

NO_ADMIN_ACCESS = (
    "The password is correct, but the account “%(username)s” has no access to the admin. "
    "Ask an administrator to grant it staff access (and the permissions your role needs)."
)


class GatewayAdminLoginForm(AdminAuthenticationForm):
    """Tells a non-staff user with the right password that the account lacks admin access.

    Django's default says "enter the correct username and password for a
    staff account", which sends people hunting for a password that is not wrong.
    """

    def confirm_login_allowed(self, user) -> None:
        """Inactive accounts never reach here (authentication fails); non-staff ones get their own message."""
        if not user.is_staff:
            raise forms.ValidationError(
                NO_ADMIN_ACCESS, code="no_admin_access", params={"username": user.get_username()}
            )
        super().confirm_login_allowed(user)


admin.site.login_form = GatewayAdminLoginForm
admin.site.site_header = "MaaS Gateway administration"
admin.site.site_title = "MaaS Gateway"
admin.site.index_title = "Tenants, policies, models and the audit trail"
# The gateway has no public home page; its developer-facing start is the API reference.
admin.site.site_url = "/v1/docs/"
admin.site.index_template = "admin/maas_index.html"
# At 1366 px the navigation sidebar and a list's filters together left ~700 px for the results;
# the breadcrumbs and the index lead everywhere the sidebar did.
admin.site.enable_nav_sidebar = False
