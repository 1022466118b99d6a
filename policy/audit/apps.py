"""App config for supervision: the append-only, sealed audit trail."""

from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The audit trail (supervision half of the policy app)."""

    name = "policy.audit"
    label = "audit"
    verbose_name = "Audit trail"
    default_auto_field = "django.db.models.BigAutoField"
