"""App config for tenants, API keys, plans and quotas."""

from django.apps import AppConfig


class TenantsConfig(AppConfig):
    """Tenants, API keys, plans and quotas."""

    name = "tenants"
    default_auto_field = "django.db.models.BigAutoField"
