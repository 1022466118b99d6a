"""App config for the gateway project package.

It owns no model any more: Generation moved to ``core`` and BatchJob to
``jobs`` (state-only migrations 0003 and 0004; the tables keep their names).
Its migrations stay because existing databases have applied them.
"""

from django.apps import AppConfig


class GatewayConfig(AppConfig):
    """The Django project and edge: settings, URLs, the Celery app, the governed pipeline, the APIs."""

    name = "gateway"
    default_auto_field = "django.db.models.BigAutoField"
