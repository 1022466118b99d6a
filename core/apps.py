"""App config of the foundation: it owns the cross-process invalidation table."""

from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The foundation's one model: the invalidation generations (table ``gateway_generation``)."""

    name = "core"
    label = "core"
    verbose_name = "Foundation"
    default_auto_field = "django.db.models.BigAutoField"
