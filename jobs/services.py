"""Writes for batch jobs: acceptance, execution in chunks, cancellation, recovery.

Exactly-once completion without distributed locks: a worker owns a job
through a lease (``lease_owner``/``lease_expires_at``) taken and renewed with
conditional UPDATEs; progress is stored after every chunk together with the
chunk's results (a memory-mapped ``.npy`` file), so a redelivered job resumes
where the dead worker stopped; the final transition is a conditional UPDATE
from ``running``, so only one execution can complete a job.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.services import audit_event_record, audit_input_digest
from core.errors import DomainError
from core.queue import task_enqueue
from inference.selectors import model_serving_get, model_version_get
from inference.services import model_predict
from jobs.errors import IdempotencyKeyReused, TooManyJobs
from jobs.governance import batch_job_recheck, refusal_detail
from jobs.models import BatchJob
from jobs.selectors import batch_job_active_count
from tenants.models import Tenant
from tenants.principal import Principal
from tenants.services import quota_refund_state

logger = logging.getLogger("gateway.jobs")

# The registered name of jobs.tasks.batch_job_run (its pre-move implicit name, kept for queued messages).
BATCH_JOB_RUN_TASK = "gateway.jobs.tasks.batch_job_run"


def job_dir(job_id: Any) -> Path:
    """Where a job's input and results live."""
    return Path(settings.JOBS_DIR) / str(job_id)


def request_digest(payload: bytes) -> str:
    """Identifies a submission's content for idempotency checks."""
    return hashlib.sha256(payload).hexdigest()


def batch_job_find_idempotent(*, principal: Principal, idempotency_key: str, digest: str) -> BatchJob | None:
    """The job an earlier submission with this key created, if any; 409 when the body differs."""
    if not idempotency_key:
        return None
    job = BatchJob.objects.filter(tenant_id=principal.tenant_id, idempotency_key=idempotency_key).first()
    if job is not None and job.request_digest != digest:
        raise IdempotencyKeyReused("This Idempotency-Key was already used for a different request.")
    return job


@dataclass
class Acceptance:
    """What the submitting request needs to answer 202."""

    job: BatchJob
    created: bool


def batch_job_accept(
    *,
    principal: Principal,
    model: Any,
    batch: np.ndarray,
    purpose: str,
    policy_versions: str,
    review_threshold: float | None,
    quota_state: dict[str, Any],
    idempotency_key: str,
    digest: str,
    request_id: str,
) -> Acceptance:
    """Store the validated input and the job row; enqueue it once the row is committed.

    A concurrent submission with the same ``Idempotency-Key`` may have inserted
    its row after the caller's :func:`batch_job_find_idempotent` missed it; the
    unique constraint then refuses ours, and the earlier job is returned with
    ``created=False`` (a replay, exactly as for a sequential duplicate; 409 if
    the bodies differ).
    """
    job = BatchJob(
        tenant_id=principal.tenant_id,
        tenant_slug=principal.tenant_slug,
        key_id=principal.key_id,
        key_prefix=principal.key_prefix,
        idempotency_key=idempotency_key,
        request_digest=digest,
        model_name=model.name,
        model_version=model.version,
        model_sha256=model.sha256,
        purpose=purpose,
        policy_versions=policy_versions,
        review_threshold=review_threshold,
        total=int(batch.shape[0]),
        units_reserved=int(batch.shape[0]),
        quota_state=quota_state,
        request_id=request_id,
    )
    path = job_dir(job.id)
    try:
        # A savepoint when the caller is in a transaction: a refused INSERT rolls back only
        # this block (and the on_commit below), so the caller can still look up and audit.
        with transaction.atomic():
            # One submission per tenant at a time from here to commit, so the count sees every
            # job committed before ours (PostgreSQL: the tenant row's lock; SQLite's IMMEDIATE
            # transactions already serialise writers and ignore the clause).
            list(Tenant.objects.select_for_update().filter(pk=principal.tenant_id).values_list("pk", flat=True))
            if batch_job_active_count(tenant_id=principal.tenant_id) >= principal.limits.max_concurrent_jobs:
                raise TooManyJobs(
                    f"This plan allows {principal.limits.max_concurrent_jobs} concurrent jobs; wait for one to finish.",
                    headers={"Retry-After": "5"},
                )
            path.mkdir(parents=True, exist_ok=True)
            np.save(path / "input.npy", np.ascontiguousarray(batch, dtype=np.float32))
            job.save(force_insert=True)
            transaction.on_commit(lambda: _enqueue(job.id))
    except IntegrityError:
        # Our row never existed: its stored input would only be an orphan.
        shutil.rmtree(path, ignore_errors=True)
        # The only unique constraint a fresh UUID row can hit is batchjob_idempotency_per_tenant.
        existing = batch_job_find_idempotent(principal=principal, idempotency_key=idempotency_key, digest=digest)
        if existing is None:
            raise
        return Acceptance(job=existing, created=False)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)  # refused or failed: no orphaned input
        raise
    return Acceptance(job=job, created=True)


def _enqueue(job_id: Any) -> None:
    """Hand the job to the broker; if the broker is down the job stays queued in the database.

    The job row is already committed (the submission was accepted and audited),
    so a broker outage must not turn that into an error: the beat task
    ``batch_jobs_recover_task`` re-enqueues queued jobs once the broker is back.
    """

    def leave_for_recovery(exc: Exception) -> None:
        logger.warning("broker unavailable; job left for recovery", extra={"job_id": str(job_id), "error": str(exc)})

    task_enqueue(task=BATCH_JOB_RUN_TASK, args=(str(job_id),), on_broker_failure=leave_for_recovery)


class ExecutionOutcome:
    """Why ``batch_job_execute`` returned."""

    FINISHED = "finished"
    ALREADY_FINISHED = "already_finished"
    LEASED_ELSEWHERE = "leased_elsewhere"
    LOST_LEASE = "lost_lease"


def _claim(job_id: str, worker: str) -> bool:
    now = timezone.now()
    return bool(
        BatchJob.objects.filter(id=job_id, status__in=BatchJob.ACTIVE)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now) | Q(lease_owner=worker))
        .update(
            status=BatchJob.Status.RUNNING,
            lease_owner=worker,
            lease_expires_at=now + timedelta(seconds=settings.JOB_LEASE_SECONDS),
            attempts=F("attempts") + 1,
        )
    )


def batch_job_execute(*, job_id: str, worker: str) -> str:
    """Run (or resume) a job under a lease; idempotent for redelivered messages."""
    if not _claim(job_id, worker):
        job = BatchJob.objects.filter(id=job_id).first()
        if job is None or job.status in BatchJob.FINISHED:
            return ExecutionOutcome.ALREADY_FINISHED
        return ExecutionOutcome.LEASED_ELSEWHERE
    job = BatchJob.objects.get(id=job_id)
    if job.started_at is None:
        BatchJob.objects.filter(id=job.id).update(started_at=timezone.now())
    if job.cancel_requested:
        _finish(job, worker, BatchJob.Status.CANCELLED)
        return ExecutionOutcome.FINISHED
    try:
        model = model_serving_get(name=job.model_name, version=job.model_version)
        path = job_dir(job.id)
        inputs = np.load(path / "input.npy", mmap_mode="r")
        results_path = path / "probabilities.npy"
        classes = len(model.labels)
        if results_path.exists():
            results = np.lib.format.open_memmap(results_path, mode="r+")
        else:
            results = np.lib.format.open_memmap(results_path, mode="w+", dtype=np.float32, shape=(job.total, classes))
        done = job.done
        while done < job.total:
            fresh = BatchJob.objects.filter(id=job.id).values("cancel_requested", "lease_owner").first()
            if fresh is None or fresh["lease_owner"] != worker:
                return ExecutionOutcome.LOST_LEASE
            if fresh["cancel_requested"]:
                _finish(job, worker, BatchJob.Status.CANCELLED)
                return ExecutionOutcome.FINISHED
            try:
                batch_job_recheck(job=job, model=model)
            except DomainError as refusal:
                # What would refuse a request now stops the job: unrun instances are refunded.
                _finish(
                    job,
                    worker,
                    BatchJob.Status.CANCELLED,
                    error=refusal.detail[:2000],
                    error_code=refusal.code,
                    extra=refusal_detail(refusal),
                )
                return ExecutionOutcome.FINISHED
            end = min(done + settings.JOB_CHUNK_SIZE, job.total)
            chunk = np.ascontiguousarray(inputs[done:end])
            prediction = model_predict(model=model, batch=chunk)
            results[done:end] = prediction.probabilities
            results.flush()
            flagged = 0
            if job.review_threshold is not None:
                flagged = int((np.asarray(prediction.top_probabilities) < job.review_threshold).sum())
            # The chunk's audit record and the progress it reports commit together: a worker
            # killed (or a lease lost) in between leaves neither, so the chunk that is run
            # again is recorded once, and audit totals equal the instances actually served.
            with transaction.atomic():
                _audit_chunk(job, model, chunk, prediction, start=done, end=end, flagged=flagged)
                updated = BatchJob.objects.filter(id=job.id, lease_owner=worker, status=BatchJob.Status.RUNNING).update(
                    done=end,
                    needs_review=F("needs_review") + flagged,
                    lease_expires_at=timezone.now() + timedelta(seconds=settings.JOB_LEASE_SECONDS),
                )
                if not updated:
                    transaction.set_rollback(True)
            if not updated:
                return ExecutionOutcome.LOST_LEASE
            done = end
        _finish(job, worker, BatchJob.Status.SUCCEEDED)
        return ExecutionOutcome.FINISHED
    except Exception as exc:
        if _is_transient(exc):
            raise
        logger.exception("batch job failed", extra={"job_id": str(job.id)})
        _finish(job, worker, BatchJob.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000])
        return ExecutionOutcome.FINISHED


def _is_transient(exc: BaseException) -> bool:
    from django.db import InterfaceError, OperationalError

    return isinstance(exc, OperationalError | InterfaceError)


def _audit_chunk(
    job: BatchJob, model: Any, chunk: np.ndarray, prediction: Any, *, start: int, end: int, flagged: int
) -> None:
    counts: dict[str, int] = {}
    for label in prediction.labels:
        counts[str(label)] = counts.get(str(label), 0) + 1
    audit_event_record(
        event_type="job",
        action="job.chunk",
        request_id=job.request_id,
        actor=f"tenant:{job.tenant_slug}/key:{job.key_prefix}",
        tenant_id=job.tenant_id,
        tenant_slug=job.tenant_slug,
        key_prefix=job.key_prefix,
        model_name=model.name,
        model_version=model.version,
        model_sha256=model.sha256,
        decision="allow",
        policy_versions=job.policy_versions,
        purpose=job.purpose,
        input_digest=audit_input_digest(payload=chunk.tobytes()),
        units=0,
        prediction={"count": end - start, "labels": counts, "needs_review": flagged},
        needs_review=flagged > 0,
        detail={"job_id": str(job.id), "start": start, "end": end},
    )


def _finish(
    job: BatchJob,
    worker: str,
    status: str,
    error: str = "",
    *,
    error_code: str = "",
    extra: dict[str, Any] | None = None,
) -> bool:
    """The one transition to a final state: only the lease holder, only once.

    The job's raw input is deleted once the transition commits (policy keeps
    digests, not inputs); a succeeded job's results are kept until
    ``expires_at`` (``JOB_RESULTS_TTL_DAYS``), anything else's partial results
    go with the input.
    """
    if not error_code and status == BatchJob.Status.FAILED:
        error_code = "job_failed"
    with transaction.atomic():
        now = timezone.now()
        succeeded = status == BatchJob.Status.SUCCEEDED
        expires_at = now + timedelta(days=settings.JOB_RESULTS_TTL_DAYS) if succeeded else None
        updated = BatchJob.objects.filter(id=job.id, status=BatchJob.Status.RUNNING, lease_owner=worker).update(
            status=status,
            finished_at=now,
            error=error,
            error_code=error_code,
            expires_at=expires_at,
            completions=F("completions") + 1,
            lease_expires_at=None,
        )
        if not updated:
            return False
        job.refresh_from_db()
        _refund_unrun(job)
        detail = {"job_id": str(job.id), "done": job.done, "total": job.total, "refunded": job.units_refunded}
        detail.update(extra or {})
        audit_event_record(
            event_type="job",
            action=f"job.{status}",
            request_id=job.request_id,
            actor=f"tenant:{job.tenant_slug}/key:{job.key_prefix}",
            tenant_id=job.tenant_id,
            tenant_slug=job.tenant_slug,
            key_prefix=job.key_prefix,
            model_name=job.model_name,
            model_version=job.model_version,
            model_sha256=job.model_sha256,
            units=-job.units_refunded,
            error_code=error_code,
            rule_id=str(detail.get("rule_id", ""))[:100],
            reason_code=str(detail.get("reason_code", ""))[:64],
            detail=detail,
        )
        keep_results = status == BatchJob.Status.SUCCEEDED
        transaction.on_commit(lambda: batch_job_files_delete(job_id=job.id, keep_results=keep_results))
    return True


def batch_job_files_delete(*, job_id: Any, keep_results: bool) -> None:
    """Delete a finished job's raw input (and, unless ``keep_results``, everything else it stored)."""
    path = job_dir(job_id)
    if keep_results:
        (path / "input.npy").unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def batch_jobs_expire(*, now: Any = None) -> int:
    """Delete the results of succeeded jobs past ``expires_at``; the job row stays and says so."""
    now = now or timezone.now()
    expired = list(
        BatchJob.objects.filter(
            status=BatchJob.Status.SUCCEEDED, expires_at__lte=now, results_deleted_at__isnull=True
        ).values_list("id", flat=True)
    )
    for job_id in expired:
        # Row first: once it says "deleted" no reader opens the file, then the file goes.
        BatchJob.objects.filter(id=job_id).update(results_deleted_at=now)
        shutil.rmtree(job_dir(job_id), ignore_errors=True)
    return len(expired)


def _refund_unrun(job: BatchJob) -> None:
    unrun = job.units_reserved - job.done
    if unrun <= 0:
        return
    try:
        quota_refund_state(state=job.quota_state, units=unrun)
    except Exception:
        # The durable record (negative units on the final audit event) is what
        # counters are rebuilt from, so a failed live refund self-heals.
        logger.warning("live quota refund failed for job", extra={"job_id": str(job.id)})
    BatchJob.objects.filter(id=job.id).update(units_refunded=unrun)
    job.units_refunded = unrun


def batch_job_cancel(*, job: BatchJob, actor: str) -> BatchJob:
    """Cancel a queued job at once; ask a running one to stop after its current chunk."""
    with transaction.atomic():
        if job.status == BatchJob.Status.QUEUED:
            updated = BatchJob.objects.filter(id=job.id, status=BatchJob.Status.QUEUED).update(
                status=BatchJob.Status.RUNNING,
                lease_owner=f"cancel:{actor}",
                lease_expires_at=timezone.now() + timedelta(seconds=settings.JOB_LEASE_SECONDS),
            )
            if updated:
                job.refresh_from_db()
                _finish(job, f"cancel:{actor}", BatchJob.Status.CANCELLED)
        elif job.status == BatchJob.Status.RUNNING:
            BatchJob.objects.filter(id=job.id).update(cancel_requested=True)
    job.refresh_from_db()
    return job


def batch_jobs_recover(*, stale_after_seconds: int = 60) -> int:
    """Re-enqueue jobs whose worker died (expired lease) or whose message was lost."""
    now = timezone.now()
    stale = BatchJob.objects.filter(
        Q(status=BatchJob.Status.RUNNING, lease_expires_at__lt=now)
        | Q(status=BatchJob.Status.QUEUED, created_at__lt=now - timedelta(seconds=stale_after_seconds))
    ).values_list("id", flat=True)
    count = 0
    for job_id in stale:
        _enqueue(job_id)
        count += 1
    return count


def batch_job_results(*, job: BatchJob) -> tuple[np.ndarray, list[Any]]:
    """Probabilities (memory-mapped) and class labels of a finished job.

    The labels come from the registry row, which outlives serving: results stay
    readable after the version is retired, and reading them loads no session.
    """
    probabilities = np.load(job_dir(job.id) / "probabilities.npy", mmap_mode="r")
    row = model_version_get(name=job.model_name, version=job.model_version)
    return probabilities, list(row.labels)


__all__ = [
    "Acceptance",
    "ExecutionOutcome",
    "batch_job_accept",
    "batch_job_cancel",
    "batch_job_execute",
    "batch_job_files_delete",
    "batch_job_find_idempotent",
    "batch_job_results",
    "batch_jobs_expire",
    "batch_jobs_recover",
    "request_digest",
]
