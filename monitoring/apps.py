"""Django app configuration of the supervision app (label ``monitoring``)."""

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """Live statistics windows and monitor results per model version."""

    name = "monitoring"
    label = "monitoring"
    verbose_name = "Post-market monitoring"
    default_auto_field = "django.db.models.BigAutoField"
