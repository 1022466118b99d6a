"""App config for the gateway project package (it owns the invalidation table)."""

from django.apps import AppConfig


class GatewayConfig(AppConfig):
    """The gateway's own models: cross-process invalidation generations."""

    name = "gateway"
    default_auto_field = "django.db.models.BigAutoField"
