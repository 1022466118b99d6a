"""Django app configuration of the supervision app (label ``monitoring``)."""

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """Live statistics windows and monitor results per model version."""

    name = "monitoring"
    label = "monitoring"
    verbose_name = "Post-market monitoring"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the evidence freeze as a lifecycle guard of the registry (no upward import there)."""
        from inference.lifecycle_guards import lifecycle_guard_register
        from monitoring.services.incidents import evidence_frozen_check

        lifecycle_guard_register(evidence_frozen_check)
