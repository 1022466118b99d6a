"""The problem+json error format in the OpenAPI document: one serializer and one description per status.

In the foundation because every app documents its HTTP errors the same way
and the error format itself is defined here (``core.errors``).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from core.errors import PROBLEM_CONTENT_TYPE

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid input: malformed JSON, missing or wrongly typed fields, wrong widths, NaN/infinity, "
    "empty or oversized batches (`invalid_input`, `malformed_request`, `batch_too_large`, ...).",
    401: "Missing, invalid, expired or revoked API key (`WWW-Authenticate: Bearer`).",
    403: "Insufficient scope, suspended tenant, or a policy denial (`policy_denied` carries `rule_id`).",
    404: "Unknown model, version or object (another tenant's objects are 404 too).",
    410: "Gone: a job's results expired (`job_results_expired`) and were deleted.",
    409: "Conflict, e.g. an `Idempotency-Key` reused for a different request.",
    413: "The body exceeds the plan's size limit.",
    415: "Unsupported `Content-Type`.",
    429: "Rate limited, quota exceeded or too many concurrent jobs; honour `Retry-After`.",
    503: "A dependency (database, quota backend, policy state, audit trail, model) is unavailable; "
    "honour `Retry-After`.",
}


class ProblemSerializer(serializers.Serializer):
    """An RFC 9457 problem document with the gateway's stable extension members.

    Further members appear where they help a client (``rule_id`` and
    ``reason_code`` on policy denials, ``errors`` on validation failures,
    ``instance``/``expected_width`` on bad instances, ``max_batch``...).
    """

    type = serializers.CharField(help_text="URI naming the problem type; ends in `code`.")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField(help_text="Stable, machine-readable error code.")
    request_id = serializers.CharField(help_text="Also in the `X-Request-ID` header; quote it in support requests.")


def problem_responses(*statuses: int) -> dict[tuple[int, str], OpenApiResponse]:
    """``extend_schema(responses=...)`` entries documenting ``statuses`` as problem+json answers."""
    return {
        (status, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description=ERROR_DESCRIPTIONS[status])
        for status in statuses
    }
