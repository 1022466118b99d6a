"""Django app configuration of the supervision app (label ``monitoring``)."""

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """Live statistics windows and monitor results per model version."""

    name = "monitoring"
    label = "monitoring"
    verbose_name = "Post-market monitoring"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the evidence freeze and the kill-switch webhooks with the lower apps (no upward import there)."""
        from inference.lifecycle_guards import lifecycle_guard_register
        from monitoring.services.incidents import evidence_frozen_check
        from monitoring.services.webhooks import kill_switch_webhook_emit
        from policy.kill_switch_listeners import kill_switch_listener_register

        lifecycle_guard_register(evidence_frozen_check)
        kill_switch_listener_register(kill_switch_webhook_emit)
