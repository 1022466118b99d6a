"""OpenAPI pieces shared by every view: the problem schema, error responses, the security scheme."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

Problem = inline_serializer(
    name="Problem",
    fields={
        "type": serializers.CharField(),
        "title": serializers.CharField(),
        "status": serializers.IntegerField(),
        "detail": serializers.CharField(),
        "code": serializers.CharField(),
        "request_id": serializers.CharField(),
    },
)

PROBLEM_RESPONSES = {
    400: OpenApiResponse(Problem, description="Invalid input (application/problem+json)"),
    401: OpenApiResponse(Problem, description="Missing or invalid API key"),
    403: OpenApiResponse(Problem, description="Insufficient scope, suspended tenant or policy denial"),
    404: OpenApiResponse(Problem, description="Unknown model, version or object"),
    429: OpenApiResponse(Problem, description="Rate limited or quota exceeded (Retry-After)"),
    503: OpenApiResponse(Problem, description="A dependency is unavailable (Retry-After)"),
}

