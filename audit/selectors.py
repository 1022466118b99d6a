"""Reads of the audit trail: filtered events, the chain head, exports, retention state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db.models import Max, QuerySet
from django.utils.dateparse import parse_date, parse_datetime

from audit.canonical import timestamp_text
from audit.errors import AuditExportNotFound, AuditExportNotReady, InvalidExportFilter
from audit.models import AuditEvent, AuditExport, LegalHold, SealState, TenantRetention
from audit.signing import signing_identity, trusted_public_keys


def _datetime_from_text(text: str) -> datetime | None:
    """A date-time or a bare date (as midnight), or ``None`` when the text has neither shape."""
    parsed = parse_datetime(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    if parsed is None:
        day = parse_date(text)
        if day is not None:
            parsed = datetime(day.year, day.month, day.day)
    return parsed


def _parse_when(name: str, value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed: datetime | None = value
    else:
        text = str(value).strip()
        # Django's parsers return None for text of the wrong shape but raise
        # ValueError for a well-formed impossible one (2024-02-30, T25:00).
        try:
            parsed = _datetime_from_text(text)
        except ValueError:
            parsed = None
        if parsed is None:
            raise InvalidExportFilter(f"{name}: {text!r} is not an ISO-8601 date or date-time", field=name)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _parse_version(value: Any) -> int | None:
    """A model version filter: empty means any; otherwise a positive integer (``InvalidExportFilter``)."""
    if value in (None, ""):
        return None
    text = str(value)
    if not text.isdigit() or int(text) < 1:
        raise InvalidExportFilter("model_version must be a positive integer", field="model_version")
    return int(text)


@dataclass(frozen=True)
class ExportFilters:
    """Which events an export covers; empty strings and ``None`` mean "any"."""

    since: datetime | None = None
    until: datetime | None = None
    tenant: str = ""
    model: str = ""
    event_type: str = ""
    decision: str = ""
    # One version of ``model`` (incident bundles); absent from ``as_dict`` when unset, so
    # manifests of ordinary exports keep their shape.
    model_version: int | None = None

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> ExportFilters:
        """Parse user input (query string, form, command options); raises ``InvalidExportFilter``."""
        since = _parse_when("since", data.get("since"))
        until = _parse_when("until", data.get("until"))
        if since and until and since >= until:
            raise InvalidExportFilter("since must be earlier than until", field="since")
        event_type = str(data.get("event_type") or "")
        if event_type and event_type not in AuditEvent.Type.values:
            raise InvalidExportFilter(
                f"event_type {event_type!r} is not one of {sorted(AuditEvent.Type.values)}", field="event_type"
            )
        return cls(
            since=since,
            until=until,
            tenant=str(data.get("tenant") or ""),
            model=str(data.get("model") or ""),
            event_type=event_type,
            decision=str(data.get("decision") or ""),
            model_version=_parse_version(data.get("model_version")),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON form for manifests, audit details and the ``AuditExport`` row."""
        return {
            "since": timestamp_text(self.since) if self.since else None,
            "until": timestamp_text(self.until) if self.until else None,
            "tenant": self.tenant,
            "model": self.model,
            "event_type": self.event_type,
            "decision": self.decision,
            **({"model_version": self.model_version} if self.model_version is not None else {}),
        }


def audit_events_filtered(*, filters: ExportFilters) -> QuerySet[AuditEvent]:
    """Events matching the filters (``since`` inclusive, ``until`` exclusive, on ``occurred_at``)."""
    qs = AuditEvent.objects.all()
    if filters.since:
        qs = qs.filter(occurred_at__gte=filters.since)
    if filters.until:
        qs = qs.filter(occurred_at__lt=filters.until)
    if filters.tenant:
        qs = qs.filter(tenant_slug=filters.tenant)
    if filters.model:
        qs = qs.filter(model_name=filters.model)
    if filters.event_type:
        qs = qs.filter(event_type=filters.event_type)
    if filters.decision:
        qs = qs.filter(decision=filters.decision)
    if filters.model_version is not None:
        qs = qs.filter(model_version=filters.model_version)
    return qs


def audit_last_seq() -> int:
    """Highest sequence number stored right now (0 when the trail is empty)."""
    return AuditEvent.objects.aggregate(top=Max("seq"))["top"] or 0


def audit_sealed_through() -> int:
    """Last sequence number covered by the seal chain."""
    state = SealState.objects.filter(pk=1).first()
    return state.head_last_seq if state else 0


def audit_unsealed_count() -> int:
    """Events not sealed yet."""
    return AuditEvent.objects.filter(seq__gt=audit_sealed_through()).count()


def audit_export_get(*, export_id: int) -> AuditExport:
    """One export by id, or ``AuditExportNotFound``."""
    export = AuditExport.objects.filter(pk=export_id).first()
    if export is None:
        raise AuditExportNotFound(f"No audit export {export_id}.")
    return export


def audit_export_manifest_get(*, export_id: int) -> dict[str, Any]:
    """The signed manifest of a finished export, or ``AuditExportNotReady``."""
    export = audit_export_get(export_id=export_id)
    if export.manifest is None:
        raise AuditExportNotReady(f"Audit export {export_id} has no manifest yet (status {export.status}).")
    return export.manifest


def audit_public_key_info() -> dict[str, Any]:
    """The signing key's public half as published at ``/v1/audit/public-key``."""
    identity = signing_identity()
    previous = [key_id for key_id in trusted_public_keys() if key_id != identity.key_id]
    return {
        "algorithm": identity.algorithm,
        "key_id": identity.key_id,
        "fingerprint": f"SHA256:{identity.key_id}",
        "public_key_pem": identity.public_key_pem,
        "previous_key_ids": previous,
    }


def retention_days_by_tenant() -> dict[str, int]:
    """Configured retention per tenant slug (tenants without a row use the default)."""
    return dict(TenantRetention.objects.values_list("tenant_slug", "retention_days"))


def retention_default_days() -> int:
    """Retention for tenants without a configured period (never below the floor)."""
    floor = settings.AUDIT_RETENTION_FLOOR_DAYS
    return max(floor, int(getattr(settings, "AUDIT_DEFAULT_RETENTION_DAYS", 365)))


def legal_holds_active() -> set[str]:
    """Tenant slugs under an active legal hold (``*`` holds everyone)."""
    return set(LegalHold.objects.filter(released_at__isnull=True).values_list("tenant_slug", flat=True))
