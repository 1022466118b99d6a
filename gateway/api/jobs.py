"""REST v1 batch jobs: submit (202), inspect, list, download results, cancel."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import transaction
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.multipartparser import MultiPartParserError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request

from core.errors import InvalidInput, MalformedRequest, PayloadTooLarge
from core.sanitize import text_require_clean
from gateway.api.base import GovernedApi
from gateway.api.params import (
    MAX_VERSION,
    PURPOSE_HEADER,
    PURPOSE_MAX_LENGTH,
    InstancesField,
    StrictCharField,
    StrictIntegerField,
    StrictSerializer,
    params_validated,
    requested_purpose,
    requested_version,
)
from gateway.openapi import (
    EXAMPLE_DIGIT,
    EXAMPLE_PROBABILITIES,
    RATE_LIMIT_HEADERS,
    RETRY_AFTER_HEADER,
    problem_responses,
)
from gateway.pipeline import GovernedCall, body_json, body_length_check
from jobs.errors import JobNotFound, JobResultsExpired
from jobs.models import BatchJob
from jobs.services import (
    batch_job_accept,
    batch_job_cancel,
    batch_job_find_idempotent,
    batch_job_results,
    request_digest,
)
from tenants.principal import SCOPE_JOBS
from tenants.services import quota_state_of

INLINE_RESULTS_MAX = 1000
# How size refusals name the (deployment-wide, not per-plan) job body limit.
JOB_LIMIT = "the job limit"


def job_body(job: BatchJob, *, include_results: bool = True) -> dict[str, Any]:
    """The public representation of a job."""
    body: dict[str, Any] = {
        "id": str(job.id),
        "status": job.status,
        "model": job.model_name,
        "version": job.model_version,
        "purpose": job.purpose,
        "progress": {"done": job.done, "total": job.total},
        "needs_review": job.needs_review,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "units_refunded": job.units_refunded,
        "error": job.error or None,
        "error_code": job.error_code or None,
        "expires_at": job.expires_at.isoformat() if job.expires_at else None,
        "results_expired": job.results_deleted_at is not None,
    }
    if job.status == BatchJob.Status.SUCCEEDED and job.results_deleted_at is None:
        body["results_url"] = f"/v1/jobs/{job.id}/results"
        if include_results and job.total <= INLINE_RESULTS_MAX:
            results = batch_job_results(job=job)
            body["results"] = results.rows(0, results.count)
    return body


def _form_version(text: str) -> int | None:
    """A multipart form's ``version`` (text): plain decimal digits naming a valid version."""
    # isdecimal, not isdigit: "²" is a digit that int() refuses.
    if not text.isdecimal() or len(text) > len(str(MAX_VERSION)):
        raise InvalidInput(f"'version' must be an integer from 1 to {MAX_VERSION}.")
    return requested_version(int(text))


def _parse_submission(request: HttpRequest, *, max_bytes: int) -> tuple[dict[str, Any], Any, bytes]:
    """JSON ``{"model", "instances", ...}`` or multipart with a ``.npy``/CSV ``file``."""
    # Before request.FILES/request.body read anything: the multipart path reads the body itself.
    body_length_check(request, max_bytes=max_bytes, limit=JOB_LIMIT)
    content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        try:
            upload = request.FILES.get("file")
            form = request.POST
        except MultiPartParserError as exc:  # no or a bad boundary, a truncated part...
            raise MalformedRequest(f"The multipart body cannot be parsed: {exc}.") from None
        except RequestDataTooBig:
            raise PayloadTooLarge("The multipart form fields are too large.") from None
        except SuspiciousOperation as exc:  # too many fields or files
            raise MalformedRequest(str(exc)) from None
        if upload is None:
            raise InvalidInput("Multipart submissions need a 'file' part (.npy or .csv).")
        fields: dict[str, Any] = {k: form.get(k) for k in ("model", "purpose", "version") if form.get(k) is not None}
        if "version" in fields:
            fields["version"] = _form_version(fields["version"])
        # The documented form, checked as documented; the file's contents are parsed below.
        fields = params_validated(JobsApi.UploadSerializer, fields | {"file": upload})
        upload = fields.pop("file")
        raw = upload.read()
        name = (upload.name or "").lower()
        try:
            if name.endswith(".npy"):
                instances = np.load(io.BytesIO(raw), allow_pickle=False)
            elif name.endswith(".csv"):
                instances = np.loadtxt(io.StringIO(raw.decode()), delimiter=",", dtype=np.float64, ndmin=2)
            else:
                raise InvalidInput("The file must be a .npy array or a .csv of numbers.")
        except InvalidInput:
            raise
        except Exception as exc:  # numpy raises many kinds (EOFError, ValueError, ...) for a bad file
            raise InvalidInput(f"The file could not be read as numbers: {exc}.") from None
        digest_source = json.dumps(fields, sort_keys=True).encode() + raw
        return fields, instances, digest_source
    body = params_validated(JobsApi.InputSerializer, body_json(request, max_bytes=max_bytes, limit=JOB_LIMIT))
    return body, body["instances"], request.body


def _replay(call: GovernedCall, job: BatchJob) -> JsonResponse:
    """Answer a resubmission with the job its Idempotency-Key already created (audited as a replay)."""
    call.extra_detail.update({"job_id": str(job.id), "idempotent_replay": True})
    headers = call.record_success(status=202)
    headers.update({"Location": f"/v1/jobs/{job.id}", "Idempotent-Replayed": "true"})
    return JsonResponse(job_body(job, include_results=False), status=202, headers=headers)


class JobProgressSerializer(serializers.Serializer):
    """Instances done out of the job's total."""

    done = serializers.IntegerField()
    total = serializers.IntegerField()


class JobResultSerializer(serializers.Serializer):
    """One instance's prediction in a finished job; its members depend on the model's ``output_kind``."""

    label = serializers.JSONField(required=False, help_text="Classifiers: the predicted label (integer or string).")
    probabilities = serializers.ListField(child=serializers.FloatField(), required=False)
    value = serializers.JSONField(required=False, help_text="Regression: the predicted value (or values).")
    outputs = serializers.DictField(required=False, help_text="Raw tensors: every output, by name.")


class JobSerializer(serializers.Serializer):
    """A batch job as the API shows it (``job_body``)."""

    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=BatchJob.Status.choices)
    model = serializers.CharField()
    version = serializers.IntegerField()
    purpose = serializers.CharField(allow_blank=True)
    progress = JobProgressSerializer()
    needs_review = serializers.IntegerField(help_text="Instances flagged for human review so far.")
    created_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    units_refunded = serializers.IntegerField(help_text="Quota units given back (instances never run).")
    error = serializers.CharField(allow_null=True)
    error_code = serializers.CharField(
        allow_null=True, help_text="Why the job ended early: the refusal a request would get now, or job_failed."
    )
    expires_at = serializers.DateTimeField(
        allow_null=True, help_text="When a succeeded job's results are deleted (JOB_RESULTS_TTL_DAYS after it ends)."
    )
    results_expired = serializers.BooleanField(help_text="True once the results have been deleted.")
    results_url = serializers.CharField(required=False, help_text="Once succeeded: every prediction as JSON Lines.")
    results = JobResultSerializer(
        many=True, required=False, help_text=f"Inline once succeeded, for jobs of up to {INLINE_RESULTS_MAX} instances."
    )


class JobListSerializer(serializers.Serializer):
    """A page of jobs."""

    jobs = JobSerializer(many=True)


EXAMPLE_JOB = {
    "id": "3f0e6d52-8a53-4c8e-9d52-0f8c5b1e2a77",
    "status": "queued",
    "model": "digits",
    "version": 1,
    "purpose": "research",
    "progress": {"done": 0, "total": 2},
    "needs_review": 0,
    "created_at": "2025-01-01T12:00:00+00:00",
    "started_at": None,
    "finished_at": None,
    "units_refunded": 0,
    "error": None,
    "error_code": None,
    "expires_at": None,
    "results_expired": False,
}
EXAMPLE_FINISHED_JOB = EXAMPLE_JOB | {
    "status": "succeeded",
    "progress": {"done": 2, "total": 2},
    "started_at": "2025-01-01T12:00:01+00:00",
    "finished_at": "2025-01-01T12:00:02+00:00",
    "expires_at": "2025-01-08T12:00:02+00:00",
    "results_url": "/v1/jobs/3f0e6d52-8a53-4c8e-9d52-0f8c5b1e2a77/results",
    "results": [{"label": 0, "probabilities": EXAMPLE_PROBABILITIES}] * 2,
}


class JobsApi(GovernedApi):
    """``POST /v1/jobs`` (submit) and ``GET /v1/jobs`` (list this tenant's jobs)."""

    scope = SCOPE_JOBS
    endpoint = {"post": "jobs.submit", "get": "jobs.list"}

    class InputSerializer(StrictSerializer):
        model = StrictCharField(clean_text=False)
        instances = InstancesField(
            help_text="Up to the plan's job size; each instance as in a prediction: the one input's values as "
            "(nested) lists, or an object keyed by input name.",
        )
        purpose = StrictCharField(required=False, allow_null=True, allow_blank=True, max_length=PURPOSE_MAX_LENGTH)
        version = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_VERSION)

        class Meta:
            reject_unknown_fields = True

    class UploadSerializer(StrictSerializer):
        file = serializers.FileField(
            help_text="For one-input models: a `.npy` array shaped [batch, ...] like the input, or a 2-D `.csv` "
            "of numbers, one instance per row."
        )
        model = StrictCharField(clean_text=False)
        purpose = StrictCharField(required=False, allow_blank=True, max_length=PURPOSE_MAX_LENGTH)
        version = StrictIntegerField(required=False, min_value=1, max_value=MAX_VERSION)

    @extend_schema(
        operation_id="jobs_create",
        request={"application/json": InputSerializer, "multipart/form-data": UploadSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="Resubmitting with the same key (and body) returns the same job.",
            ),
            OpenApiParameter(
                "Location", str, OpenApiParameter.HEADER, response=[202], required=True, description="The job's URL."
            ),
            PURPOSE_HEADER,
            *RATE_LIMIT_HEADERS,
            RETRY_AFTER_HEADER,
        ],
        responses={202: JobSerializer, **problem_responses(400, 401, 403, 404, 409, 413, 415, 429, 503)},
        examples=[
            OpenApiExample(
                "two digits",
                request_only=True,
                media_type="application/json",
                value={"model": "digits", "purpose": "research", "instances": [EXAMPLE_DIGIT, EXAMPLE_DIGIT]},
            ),
            OpenApiExample("accepted", response_only=True, status_codes=["202"], value=EXAMPLE_JOB),
        ],
        tags=["jobs"],
    )
    def post(self, request: Request) -> JsonResponse:
        django_request = request._request
        call, principal = self.call, self.principal
        idempotency_key = django_request.META.get("HTTP_IDEMPOTENCY_KEY", "").strip()[:200]
        text_require_clean(idempotency_key, what="The Idempotency-Key header")
        fields, instances, digest_source = _parse_submission(django_request, max_bytes=settings.JOB_MAX_BODY_BYTES)
        digest = request_digest(digest_source)
        existing = batch_job_find_idempotent(principal=principal, idempotency_key=idempotency_key, digest=digest)
        if existing is not None:
            return _replay(call, existing)
        purpose = requested_purpose(header=django_request.META.get("HTTP_X_PURPOSE"), body=fields.get("purpose"))
        # A 0-d array (np.save of a scalar) has no len(); it is no batch either.
        count = len(instances) if isinstance(instances, list) or getattr(instances, "ndim", 0) >= 1 else 0
        if count == 0:
            raise InvalidInput("'instances' must be a non-empty list of instances.")
        call.resolve_model(name=fields["model"], version=fields.get("version"))
        decision = call.decide(purpose=purpose, action="job")
        # During a rollout the decision may route this caller to the canary: the job keeps that version.
        model = call.model
        limit = principal.limits.max_job_instances
        call.reserve(units=count, max_batch=limit)
        batch = call.validate(instances, max_batch=limit)
        with transaction.atomic():
            acceptance = batch_job_accept(
                principal=principal,
                model=model,
                batch=batch,
                purpose=call.purpose,
                policy_versions=decision.policy_versions,
                review_threshold=decision.review_threshold,
                quota_state=quota_state_of(reservation=call.reservation),
                idempotency_key=idempotency_key,
                digest=digest,
                request_id=django_request.request_id,
            )
            if not acceptance.created:
                # A concurrent submission with this Idempotency-Key won the INSERT: answer its
                # job, and give back what this one reserved, as a sequential duplicate never reserves.
                call.refund()
                return _replay(call, acceptance.job)
            call.extra_detail.update({"job_id": str(acceptance.job.id)})
            # Recorded inside the transaction: a job whose acceptance cannot be audited is not created.
            headers = call.record_success(status=202)
        headers["Location"] = f"/v1/jobs/{acceptance.job.id}"
        return JsonResponse(job_body(acceptance.job, include_results=False), status=202, headers=headers)

    @extend_schema(
        operation_id="jobs_list",
        responses={200: JobListSerializer, **problem_responses(401, 403, 503)},
        tags=["jobs"],
    )
    def get(self, request: Request) -> JsonResponse:
        jobs = self.scoped(BatchJob.objects.all())[:100]
        return JsonResponse({"jobs": [job_body(job, include_results=False) for job in jobs]})


class JobDetailApi(GovernedApi):
    """``GET /v1/jobs/{id}`` (status, progress, results) and ``DELETE`` (cancel)."""

    scope = SCOPE_JOBS
    endpoint = {"get": "jobs.detail", "delete": "jobs.cancel"}
    not_found_error = JobNotFound

    @extend_schema(
        operation_id="jobs_retrieve",
        responses={200: JobSerializer, **problem_responses(401, 403, 404, 503)},
        examples=[OpenApiExample("finished", response_only=True, status_codes=["200"], value=EXAMPLE_FINISHED_JOB)],
        tags=["jobs"],
    )
    def get(self, request: Request, job_id: str) -> JsonResponse:
        return JsonResponse(job_body(self.get_object_or_404(BatchJob.objects.all(), id=job_id)))

    @extend_schema(
        operation_id="jobs_cancel",
        responses={200: JobSerializer, **problem_responses(401, 403, 404, 503)},
        tags=["jobs"],
    )
    def delete(self, request: Request, job_id: str) -> JsonResponse:
        job = self.get_object_or_404(BatchJob.objects.all(), id=job_id)
        job = batch_job_cancel(job=job, actor=self.principal.actor)
        self.call.extra_detail = {"job_id": str(job.id), "status": job.status}
        return JsonResponse(job_body(job, include_results=False))


class JobResultsApi(GovernedApi):
    """``GET /v1/jobs/{id}/results``: every prediction as JSON Lines, streamed."""

    scope = SCOPE_JOBS
    endpoint = "jobs.results"
    not_found_error = JobNotFound

    # The view returns its own StreamingHttpResponse (which DRF never renders), so the
    # negotiated renderer only shapes error documents: the base's JSON-only negotiation keeps
    # the documented ``Accept: application/x-ndjson`` from being refused 406 before it is audited.

    @extend_schema(
        operation_id="jobs_results",
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.STR,
                description='One JSON object per line and instance: `{"index": 0, "label": 7, "probabilities": []}`.',
            ),
            **problem_responses(400, 401, 403, 404, 410, 503),
        },
        tags=["jobs"],
    )
    def get(self, request: Request, job_id: str) -> StreamingHttpResponse:
        job = self.get_object_or_404(BatchJob.objects.all(), id=job_id)
        if job.status != BatchJob.Status.SUCCEEDED:
            raise InvalidInput(f"Job {job.id} is {job.status}; results exist once it has succeeded.")
        if job.results_deleted_at is not None:
            raise JobResultsExpired(
                f"The results of job {job.id} expired at {job.expires_at.isoformat()} and were deleted."
            )
        results = batch_job_results(job=job)

        def lines() -> Iterator[bytes]:
            for start in range(0, results.count, 4096):
                rows = results.rows(start, min(start + 4096, results.count))
                yield b"".join(json.dumps({"index": start + i, **row}).encode() + b"\n" for i, row in enumerate(rows))

        return StreamingHttpResponse(lines(), content_type="application/x-ndjson")
