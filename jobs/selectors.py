"""Reads for batch jobs, always scoped to the calling tenant."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from jobs.errors import JobNotFound
from jobs.models import BatchJob


def batch_jobs_for_tenant(*, tenant_id: int) -> QuerySet[BatchJob]:
    """Every job of one tenant (the only way views reach jobs)."""
    return BatchJob.objects.filter(tenant_id=tenant_id)


def batch_job_get(*, tenant_id: int, job_id: str) -> BatchJob:
    """One of the tenant's jobs; another tenant's job (or a malformed id) is a 404."""
    try:
        key = uuid.UUID(str(job_id))
        return batch_jobs_for_tenant(tenant_id=tenant_id).get(id=key)
    except (BatchJob.DoesNotExist, ValueError):
        raise JobNotFound(f"No job {str(job_id)[:64]!r}.") from None


def batch_job_active_count(*, tenant_id: int) -> int:
    """Queued or running jobs of a tenant (for the concurrent-jobs limit)."""
    return batch_jobs_for_tenant(tenant_id=tenant_id).filter(status__in=BatchJob.ACTIVE).count()
