"""The admin app with the gateway's own default site (login with a second factor).

Kept apart from :mod:`gateway.adminauth` because ``INSTALLED_APPS`` imports
this module before the app registry is ready, and the site imports forms and
models.
"""

from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class GatewayAdminConfig(AdminConfig):
    """``django.contrib.admin`` whose ``admin.site`` is :class:`gateway.adminauth.GatewayAdminSite`."""

    default_site = "gateway.adminauth.GatewayAdminSite"

    def ready(self) -> None:
        """Admin autodiscovery, then the lockout audit hook."""
        super().ready()
        from axes.signals import user_locked_out

        from gateway.adminauth import on_user_locked_out

        user_locked_out.connect(on_user_locked_out, dispatch_uid="gateway.admin.lockout_audit")
