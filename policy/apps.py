"""App config for policy formulation and execution."""

from django.apps import AppConfig


class PolicyConfig(AppConfig):
    """Versioned policy rules and the evaluator that decides every request."""

    name = "policy"
    default_auto_field = "django.db.models.BigAutoField"
