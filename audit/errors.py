"""Domain errors of the audit trail (subclasses of the gateway's hierarchy)."""

from __future__ import annotations

from typing import Any

from core.errors import AuthenticationError, BackendUnavailable, Conflict, NotFound, ValidationFailed


class AuditRecordImmutable(Conflict):
    """An attempt to update or delete an append-only audit record."""

    code, title = "audit_record_immutable", "Audit records are append-only"


class RetentionBelowFloor(ValidationFailed):
    """A retention period shorter than the legal floor (180 days)."""

    code, title = "retention_below_floor", "Retention below the legal minimum"


class LegalHoldNotFound(NotFound):
    """No legal hold with that id."""

    code, title = "legal_hold_not_found", "Legal hold not found"


class LegalHoldAlreadyReleased(Conflict):
    """The hold was released before."""

    code, title = "legal_hold_released", "Legal hold already released"


class AuditExportNotFound(NotFound):
    """No export with that id."""

    code, title = "audit_export_not_found", "Audit export not found"


class AuditExportNotReady(Conflict):
    """The export has not finished (or failed), so it has no file or manifest yet."""

    code, title = "audit_export_not_ready", "Audit export not ready"


class InvalidExportFilter(ValidationFailed):
    """An export filter that cannot be parsed."""

    code, title = "invalid_export_filter", "Invalid export filter"


class StaffAuthenticationRequired(AuthenticationError):
    """Staff-only audit endpoints need a staff session (the admin login), not an API key or a password."""

    code, title = "staff_authentication_required", "Staff authentication required"

    def __init__(self, detail: str | None = None, **kwargs: Any):
        # Not "Basic": a browser would offer its password prompt, which bypasses the admin's lockout and 2FA.
        headers = {
            "WWW-Authenticate": 'Session realm="maas-staff", login="/admin/login/"',
            **(kwargs.pop("headers", None) or {}),
        }
        super().__init__(detail, headers=headers, **kwargs)


class AuditUnavailable(BackendUnavailable):
    code, title = "audit_unavailable", "Audit trail unavailable"


class AuditChainMismatch(Conflict):
    """The database's seal chain disagrees with the checkpoints kept outside it: the sealer refuses to go on."""

    code, title = "audit_chain_mismatch", "Audit chain disagrees with its checkpoints"


class AuditChainStartRefused(ValidationFailed):
    """A chain start without a reason (starting over is always an explained, signed decision)."""

    code, title = "audit_chain_start_refused", "Audit chain start refused"


class AuditCheckpointNotFound(NotFound):
    """No checkpoint with that number (or none written yet)."""

    code, title = "audit_checkpoint_not_found", "Audit checkpoint not found"


class AuditCheckpointWriteFailed(BackendUnavailable):
    """A checkpoint could not be written to a log the sealer must not go on without."""

    code, title = "audit_checkpoint_write_failed", "Audit checkpoint could not be written"


class AuditReceiptNotFound(NotFound):
    """No request with that id for the calling tenant (another tenant's request is not found either)."""

    code, title = "audit_receipt_not_found", "No such request"
