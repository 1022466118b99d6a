"""Domain errors of the supervision app (subclasses of :mod:`core.errors`)."""

from __future__ import annotations

from core.errors import Conflict, DomainError, NotFound


class AlertConflict(Conflict):
    """Closing an alert that is already closed."""

    code, title = "alert_conflict", "Alert conflict"


class EvidenceFrozen(Conflict):
    """An open incident on the model forbids changing which version serves (EU AI Act Art. 73(6))."""

    code, title = "evidence_frozen", "Evidence frozen by an open incident"


class IncidentConflict(Conflict):
    """An incident action that its current status does not allow."""

    code, title = "incident_conflict", "Incident conflict"


class IncidentNotFound(NotFound):
    code, title = "incident_not_found", "Incident not found"


class RegulatorBundleNotFound(NotFound):
    code, title = "regulator_bundle_not_found", "Regulator bundle not found"


class RegulatorBundleNotReady(Conflict):
    code, title = "regulator_bundle_not_ready", "Regulator bundle not ready"


class WebhookNotFound(NotFound):
    """No webhook of the caller's tenant with that id (another tenant's is not found either)."""

    code, title = "webhook_not_found", "Webhook not found"


class WebhookUrlRefused(DomainError):
    """A webhook URL that is not https, names no public host, or carries credentials."""

    status, code, title = 400, "webhook_url_refused", "Webhook URL refused"


class WebhookLimitReached(Conflict):
    """The tenant already has ``WEBHOOK_MAX_ENDPOINTS_PER_TENANT`` webhooks."""

    code, title = "webhook_limit_reached", "Webhook limit reached"
