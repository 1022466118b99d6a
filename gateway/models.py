"""Models registered under the gateway app: the batch job record (moving to the jobs app)."""

from gateway.jobs.models import BatchJob

__all__ = ["BatchJob"]
