"""Reads for batch jobs, always scoped to the calling tenant."""

from __future__ import annotations

from django.db.models import QuerySet

from jobs.models import BatchJob


def batch_jobs_for_tenant(*, tenant_id: int) -> QuerySet[BatchJob]:
    """Every job of one tenant (views reach jobs through ``GovernedApi.scoped`` instead)."""
    return BatchJob.objects.filter(tenant_id=tenant_id)


def batch_job_active_count(*, tenant_id: int) -> int:
    """Queued or running jobs of a tenant (for the concurrent-jobs limit)."""
    return batch_jobs_for_tenant(tenant_id=tenant_id).filter(status__in=BatchJob.ACTIVE).count()
