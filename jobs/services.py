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
from audit.services.recording import audit_input_payload
from core.errors import DomainError
from core.queue import task_enqueue
from inference.review import prediction_review
from inference.selectors import model_serving_get, model_version_get
from inference.services import model_predict
from inference.signature import OutputKind, tensors_from_signature
from jobs.errors import IdempotencyKeyReused, TooManyJobs
from jobs.governance import batch_job_recheck, refusal_detail
from jobs.models import BatchJob
from jobs.selectors import batch_job_active_count
from monitoring.services import live_batch_record, live_stats_flush
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
    batch: np.ndarray | dict[str, np.ndarray],
    purpose: str,
    policy_versions: str,
    review_threshold: float | None,
    quota_state: dict[str, Any],
    idempotency_key: str,
    digest: str,
    request_id: str,
) -> Acceptance:
    """Store the validated input (every input of the signature) and the job row; enqueue it once committed.

    A concurrent submission with the same ``Idempotency-Key`` may have inserted
    its row after the caller's :func:`batch_job_find_idempotent` missed it; the
    unique constraint then refuses ours, and the earlier job is returned with
    ``created=False`` (a replay, exactly as for a sequential duplicate; 409 if
    the bodies differ).
    """
    feeds = batch if isinstance(batch, dict) else {model.inputs[0].name: batch}
    total = int(next(iter(feeds.values())).shape[0])
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
        total=total,
        units_reserved=total,
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
            for index, array in enumerate(feeds.values()):
                np.save(path / _input_file(index), np.ascontiguousarray(array))
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


def _input_file(index: int) -> str:
    # The first input keeps the name jobs always used; further inputs follow in signature order.
    return "input.npy" if index == 0 else f"input.{index}.npy"


def _result_files(kind: str, names: list[str]) -> list[str]:
    """The result arrays a job of this output kind keeps, one per result tensor."""
    if kind in OutputKind.CLASSIFIERS:
        return ["probabilities.npy"]
    if kind == OutputKind.REGRESSION:
        return ["values.npy"]
    return [f"output.{index}.npy" for index in range(len(names))]


def _result_arrays(kind: str, prediction: Any, model: Any) -> list[np.ndarray]:
    if kind in OutputKind.CLASSIFIERS:
        return [prediction.probabilities]
    if kind == OutputKind.REGRESSION:
        return [prediction.values]
    return [prediction.outputs[t.name] for t in model.outputs]


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
        model = model_serving_get(name=job.model_name, version=job.model_version, staged_ok=True)
        path = job_dir(job.id)
        inputs = {
            spec.name: np.load(path / _input_file(index), mmap_mode="r") for index, spec in enumerate(model.inputs)
        }
        kind = model.output_kind
        files = [path / name for name in _result_files(kind, [t.name for t in model.outputs])]
        # Opened (or created, shaped like the first chunk's outputs) on first use; a resumed job reopens them.
        results: list[Any] = [np.lib.format.open_memmap(f, mode="r+") if f.exists() else None for f in files]
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
            chunk = {name: np.ascontiguousarray(array[done:end]) for name, array in inputs.items()}
            prediction = model_predict(model=model, batch=chunk)
            for index, array in enumerate(_result_arrays(kind, prediction, model)):
                if results[index] is None:
                    results[index] = np.lib.format.open_memmap(
                        files[index], mode="w+", dtype=array.dtype, shape=(job.total, *array.shape[1:])
                    )
                results[index][done:end] = array
                results[index].flush()
            review = prediction_review(model=model, prediction=prediction, review_threshold=job.review_threshold)
            flagged = sum(review.flags)
            # The chunk's audit record and the progress it reports commit together: a worker
            # killed (or a lease lost) in between leaves neither, so the chunk that is run
            # again is recorded once, and audit totals equal the instances actually served.
            with transaction.atomic():
                _audit_chunk(job, model, chunk, review, start=done, end=end, flagged=flagged)
                updated = BatchJob.objects.filter(id=job.id, lease_owner=worker, status=BatchJob.Status.RUNNING).update(
                    done=end,
                    needs_review=F("needs_review") + flagged,
                    lease_expires_at=timezone.now() + timedelta(seconds=settings.JOB_LEASE_SECONDS),
                )
                if not updated:
                    transaction.set_rollback(True)
            if not updated:
                return ExecutionOutcome.LOST_LEASE
            # Post-market monitoring counts the chunk once it is recorded (counts only, like a request).
            live_batch_record(
                model=model,
                feeds=chunk,
                probabilities=prediction.probabilities if kind in OutputKind.CLASSIFIERS else None,
                values=prediction.values if kind == OutputKind.REGRESSION else None,
                review_flags=flagged,
            )
            done = end
        _finish(job, worker, BatchJob.Status.SUCCEEDED)
        # A worker process has no request boundary: its counts are written when the job ends.
        live_stats_flush()
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
    job: BatchJob, model: Any, chunk: dict[str, np.ndarray], review: Any, *, start: int, end: int, flagged: int
) -> None:
    # Chunks are summarised (label counts, value aggregates or one output checksum), never listed.
    summary = review.audit(detail_max=0)
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
        input_digest=audit_input_digest(payload=audit_input_payload(chunk)),
        units=0,
        prediction=summary,
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


@dataclass
class JobResults:
    """A finished job's results, memory-mapped, read as the model's output kind says."""

    kind: str
    labels: list[Any]
    arrays: dict[str, np.ndarray]

    @property
    def count(self) -> int:
        """Instances in the job."""
        return int(next(iter(self.arrays.values())).shape[0])

    def rows(self, start: int, end: int) -> list[dict[str, Any]]:
        """The JSON objects of instances ``start`` to ``end`` (label and probabilities, value, or outputs)."""
        if self.kind in OutputKind.CLASSIFIERS:
            block = np.asarray(self.arrays["probabilities"][start:end])
            winners = block.argmax(axis=1).tolist()
            return [
                {"label": self.labels[w], "probabilities": row} for w, row in zip(winners, block.tolist(), strict=True)
            ]
        if self.kind == OutputKind.REGRESSION:
            return [{"value": value} for value in np.asarray(self.arrays["values"][start:end]).tolist()]
        columns = {name: np.asarray(array[start:end]).tolist() for name, array in self.arrays.items()}
        return [{"outputs": {name: column[i] for name, column in columns.items()}} for i in range(end - start)]


def batch_job_results(*, job: BatchJob) -> JobResults:
    """The results (memory-mapped) and class labels of a finished job.

    Kind, labels and output names come from the registry row, which outlives
    serving: results stay readable after the version is retired, and reading
    them loads no session.
    """
    row = model_version_get(name=job.model_name, version=job.model_version)
    path = job_dir(job.id)
    kind = row.output_kind
    if kind in OutputKind.CLASSIFIERS:
        names = ["probabilities"]
    elif kind == OutputKind.REGRESSION:
        names = ["values"]
    else:
        names = [t.name for t in tensors_from_signature(row.signature, "outputs")]
    files = _result_files(kind, names)
    arrays = {name: np.load(path / file, mmap_mode="r") for name, file in zip(names, files, strict=True)}
    return JobResults(kind=kind, labels=list(row.labels), arrays=arrays)


__all__ = [
    "Acceptance",
    "ExecutionOutcome",
    "JobResults",
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
