"""Reads of the supervision app: the live bins of a served version, windows and results.

:func:`live_bins_get` is on the request path: one query per model version and
process, then a dictionary lookup; the cache dies with the ``models``
generation, so a reference profile set after registration is picked up within
about a second everywhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from core.invalidation import MODELS, LocalCache
from inference.models import ModelVersion
from inference.signature import OutputKind
from monitoring.errors import IncidentNotFound, RegulatorBundleNotFound
from monitoring.live import LiveBins
from monitoring.models import Incident, LiveWindow, MonitorResult, RegulatorBundle, WebhookDelivery, WebhookEndpoint

_bins: LocalCache[LiveBins] = LocalCache(MODELS, max_entries=1000)


def _bins_load(name: str, version: int) -> LiveBins:
    row = (
        ModelVersion.objects.filter(name=name, version=version)
        .values("output_kind", "labels", "reference_profile")
        .first()
    )
    if row is None:
        return LiveBins(digest="", kind=OutputKind.TENSOR, n_labels=0)
    kind = row["output_kind"]
    n_labels = len(row["labels"] or []) if kind in OutputKind.CLASSIFIERS else 0
    return LiveBins.from_profile(row["reference_profile"], kind=kind, n_labels=n_labels)


def live_bins_get(*, name: str, version: int) -> LiveBins:
    """The bins live counts of ``name@version`` use (cached per process)."""
    return _bins.get_or_load((name, version), lambda: _bins_load(name, version))


def live_bins_cache_clear() -> None:
    """Forget cached bins (tests; the ``models`` generation does it in production)."""
    _bins.clear()


def windows_unevaluated(*, started_before: datetime) -> QuerySet[LiveWindow]:
    """Windows without a monitor result that started before ``started_before``, oldest first."""
    return LiveWindow.objects.filter(result__isnull=True, window_start__lt=started_before).order_by("window_start")


def monitor_results_list(*, model_version: ModelVersion | None = None) -> QuerySet[MonitorResult]:
    """Monitor results, newest window first (optionally of one version)."""
    rows = MonitorResult.objects.select_related("model_version").order_by("-window_start")
    return rows.filter(model_version=model_version) if model_version is not None else rows


def incident_get(*, incident_id: Any) -> Incident:
    """One incident by id; ``IncidentNotFound`` for a missing or malformed id."""
    try:
        return Incident.objects.select_related("model_version", "alert").get(pk=int(str(incident_id)))
    except (ValueError, TypeError, OverflowError, Incident.DoesNotExist):
        raise IncidentNotFound(f"No incident {str(incident_id)[:40]!r}.") from None


def incidents_overdue(*, now: datetime | None = None) -> QuerySet[Incident]:
    """Incidents whose reporting deadline has passed without a report (closed ones excepted)."""
    now = now or timezone.now()
    return (
        Incident.objects.filter(reported_at__isnull=True, deadline__lte=now)
        .exclude(status=Incident.Status.CLOSED)
        .order_by("deadline")
    )


def regulator_bundle_get(*, bundle_id: Any) -> RegulatorBundle:
    """One regulator bundle by id; ``RegulatorBundleNotFound`` for a missing or malformed id."""
    try:
        return RegulatorBundle.objects.select_related("incident").get(pk=int(str(bundle_id)))
    except (ValueError, TypeError, OverflowError, RegulatorBundle.DoesNotExist):
        raise RegulatorBundleNotFound(f"No regulator bundle {str(bundle_id)[:40]!r}.") from None


def webhook_deliveries_of(*, endpoint: WebhookEndpoint, limit: int = 100) -> QuerySet[WebhookDelivery]:
    """The newest ``limit`` deliveries to ``endpoint`` (the caller scoped the endpoint to its tenant), with events."""
    return WebhookDelivery.objects.filter(endpoint=endpoint).select_related("event").order_by("-pk")[:limit]
