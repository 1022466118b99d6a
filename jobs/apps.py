"""App config of batch jobs: the BatchJob record, its services and Celery tasks."""

from django.apps import AppConfig


class JobsConfig(AppConfig):
    """Asynchronous batch prediction jobs (the HTTP surface is ``gateway.api.jobs``)."""

    name = "jobs"
    label = "jobs"
    verbose_name = "Batch jobs"
    default_auto_field = "django.db.models.BigAutoField"
