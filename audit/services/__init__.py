"""Writes and side effects of the audit trail, one module per concern.

``recording`` (the per-request INSERT and change records), ``sealing``
(signed Merkle blocks), ``checkpoints`` (signed checkpoints outside the
database, the sealer's guard, chain starts), ``receipts`` (tenants'
verifiable receipts), ``verification`` (``verify_audit``), ``export``
(streamed, manifest-signed exports), ``retention`` (retention periods, legal
holds, purge), ``partitions`` (the monthly partitions of the event table
on PostgreSQL) and ``compliance`` (the compliance officer group).  Everything
public is re-exported here: callers import from ``audit.services``.
"""

from audit.services.checkpoints import audit_chain_start, checkpoint_get, checkpoints_verify
from audit.services.compliance import COMPLIANCE_GROUP_NAME, compliance_group_ensure
from audit.services.export import (
    ExportStream,
    audit_export_file,
    audit_export_request,
    audit_export_run,
    audit_export_stream,
    audit_export_write,
    export_file_path,
)
from audit.services.partitions import (
    AuditPartition,
    audit_events_partitioned,
    audit_events_total_bytes,
    audit_partitions_describe,
    audit_partitions_ensure,
)
from audit.services.receipts import ReceiptOutcome, audit_receipt_build
from audit.services.recording import (
    audit_change_record,
    audit_event_record,
    audit_input_digest,
    audit_request_record,
    redact_secrets,
)
from audit.services.retention import (
    PurgeResult,
    audit_month_purge,
    audit_purge,
    legal_hold_place,
    legal_hold_release,
    retention_set,
)
from audit.services.sealing import SealResult, audit_seal
from audit.services.verification import VerifyProblem, VerifyReport, audit_verify

__all__ = [
    "COMPLIANCE_GROUP_NAME",
    "AuditPartition",
    "ExportStream",
    "PurgeResult",
    "ReceiptOutcome",
    "SealResult",
    "VerifyProblem",
    "VerifyReport",
    "audit_chain_start",
    "audit_change_record",
    "audit_event_record",
    "audit_events_partitioned",
    "audit_events_total_bytes",
    "audit_export_file",
    "audit_export_request",
    "audit_export_run",
    "audit_export_stream",
    "audit_export_write",
    "audit_input_digest",
    "audit_month_purge",
    "audit_partitions_describe",
    "audit_partitions_ensure",
    "audit_purge",
    "audit_receipt_build",
    "audit_request_record",
    "audit_seal",
    "audit_verify",
    "checkpoint_get",
    "checkpoints_verify",
    "compliance_group_ensure",
    "export_file_path",
    "legal_hold_place",
    "legal_hold_release",
    "redact_secrets",
    "retention_set",
]
