"""App config for supervision: the append-only, sealed audit trail."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The audit trail: a top-level app (it was audit; the label and tables are unchanged)."""

    name = "audit"
    label = "audit"
    verbose_name = "Audit trail"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Wire the compliance-group repair, the test-flush hook and a readiness check."""
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_migrate

        from audit.db import install_flush_hook
        from core.env import is_production
        from core.health import register_readiness_check

        # After this app's post_migrate, tenants' and policy's permissions exist
        # (they precede audit in INSTALLED_APPS), so the group can be completed.
        post_migrate.connect(_ensure_compliance_group, sender=self, dispatch_uid="audit_compliance_group")
        connection_created.connect(install_flush_hook, dispatch_uid="audit_flush_hook")
        register_readiness_check("audit", _check_audit)
        if is_production():
            # Fail at start-up, naming the setting, rather than at the first seal.
            from audit.signing import signing_identity

            signing_identity()


def _ensure_compliance_group(sender: Any, using: str = "default", **kwargs: Any) -> None:
    from audit.services.compliance import compliance_group_ensure

    compliance_group_ensure(using=using)


def _check_audit() -> dict:
    """The signing key loads (a replica that cannot seal must not look healthy) and the head block."""
    from audit.selectors import audit_sealed_through
    from audit.signing import signing_identity

    return {"key_id": signing_identity().key_id[:16], "sealed_through": audit_sealed_through()}
