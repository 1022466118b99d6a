"""App config for tenants, API keys, plans and quotas."""

from django.apps import AppConfig


class TenantsConfig(AppConfig):
    """Tenants, API keys, plans and quotas."""

    name = "tenants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the quota backend's readiness check."""
        from core.health import register_readiness_check
        from tenants.health import quota_backend_check

        register_readiness_check("quota", quota_backend_check)
