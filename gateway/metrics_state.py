"""Scrape-time gauges computed from the database: the sealing backlog and jobs by state.

Gauges for state that lives in the database are refreshed when ``/metrics``
is scraped rather than kept in step on every write, so the request path pays
nothing for them.
"""

from __future__ import annotations

from django.db.models import Count, Sum
from prometheus_client import Gauge

from audit.models import AuditEvent, SealedBlock, SealState
from jobs.models import BatchJob


def state_gauges_refresh(*, sealed: Gauge, unsealed: Gauge, jobs: Gauge) -> None:
    """Set the audit and job gauges from one cheap query each."""
    state = SealState.objects.filter(pk=1).values_list("head_last_seq", flat=True).first() or 0
    sealed.set(SealedBlock.objects.aggregate(total=Sum("count"))["total"] or 0)
    unsealed.set(AuditEvent.objects.filter(seq__gt=state).count())
    counts = dict(BatchJob.objects.values_list("status").annotate(n=Count("id")))
    for status in BatchJob.Status.values:
        jobs.labels(state=status).set(counts.get(status, 0))
