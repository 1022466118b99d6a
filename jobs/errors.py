"""Domain errors of the jobs app (subclasses of :mod:`core.errors`); the one handler renders them."""

from __future__ import annotations

from core.errors import Conflict, DomainError, NotFound


class JobNotFound(NotFound):
    code, title = "job_not_found", "Job not found"


class TooManyJobs(DomainError):
    status, code, title = 429, "too_many_jobs", "Too many concurrent jobs"


class IdempotencyKeyReused(Conflict):
    code, title = "idempotency_key_reused", "Idempotency key reused"


class JobResultsExpired(DomainError):
    """The job's results were deleted after ``JOB_RESULTS_TTL_DAYS`` (privacy: nothing is kept forever)."""

    status, code, title = 410, "job_results_expired", "Job results expired"
