"""REST v1 tenant self-service: usage and the caller's own keys.

Thin views on :class:`gateway.api.base.GovernedApi`: the base authenticates,
checks the scope, scopes rows to the caller's tenant and audits every answer;
each view calls one ``tenants`` selector and serialises.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import ValidationFailed
from gateway.api.base import GovernedApi
from tenants.models import ApiKey
from tenants.principal import SCOPE_KEYS_READ, SCOPE_USAGE_READ
from tenants.selectors import api_key_status, api_keys_of_tenant, usage_report


class UsageGetApi(GovernedApi):
    """``GET /v1/usage``: the caller's tenant's limits, current quota consumption and daily history."""

    scope = SCOPE_USAGE_READ
    endpoint = "usage.read"

    class InputSerializer(serializers.Serializer):
        days = serializers.IntegerField(min_value=1, max_value=90, default=30)

    class OutputSerializer(serializers.Serializer):
        class LimitsSerializer(serializers.Serializer):
            rate_per_second = serializers.FloatField(allow_null=True)
            burst = serializers.IntegerField(allow_null=True)
            daily_instances = serializers.IntegerField(allow_null=True)
            monthly_instances = serializers.IntegerField(allow_null=True)
            max_batch = serializers.IntegerField()
            max_body_bytes = serializers.IntegerField()
            max_concurrent_jobs = serializers.IntegerField()
            max_job_instances = serializers.IntegerField()

        class QuotaSerializer(serializers.Serializer):
            scope = serializers.CharField(help_text="tenant, or key when the key has its own quota")
            period = serializers.CharField(help_text="daily or monthly (UTC)")
            limit = serializers.IntegerField(allow_null=True, help_text="null = unlimited")
            used = serializers.IntegerField()
            remaining = serializers.IntegerField(allow_null=True)
            resets_at = serializers.DateTimeField()

        class RateSerializer(serializers.Serializer):
            scope = serializers.CharField()
            per_second = serializers.FloatField()
            burst = serializers.IntegerField()

        class TotalsSerializer(serializers.Serializer):
            since = serializers.DateTimeField()
            until = serializers.DateTimeField()
            requests = serializers.IntegerField()
            instances = serializers.IntegerField()
            refusals = serializers.IntegerField()
            errors = serializers.IntegerField()
            refusals_by_code = serializers.DictField(child=serializers.IntegerField())

        class DaySerializer(serializers.Serializer):
            day = serializers.DateField()
            requests = serializers.IntegerField()
            instances = serializers.IntegerField()
            refusals = serializers.IntegerField()
            errors = serializers.IntegerField()
            avg_latency_ms = serializers.FloatField(allow_null=True)

        class BreakdownSerializer(serializers.Serializer):
            label = serializers.CharField()
            requests = serializers.IntegerField()
            instances = serializers.IntegerField()
            refusals = serializers.IntegerField()
            errors = serializers.IntegerField()
            avg_latency_ms = serializers.FloatField(allow_null=True)
            max_latency_ms = serializers.FloatField(allow_null=True)

        tenant = serializers.CharField()
        key_prefix = serializers.CharField()
        limits = LimitsSerializer()
        quotas = QuotaSerializer(many=True)
        rate = RateSerializer(many=True)
        totals = TotalsSerializer(source="summary")
        days = DaySerializer(many=True, source="summary.days")
        models = BreakdownSerializer(many=True, source="summary.models")
        keys = BreakdownSerializer(many=True, source="summary.keys")

    @extend_schema(
        operation_id="usage_retrieve",
        parameters=[OpenApiParameter("days", int, description="History length in days (1-90, default 30).")],
        responses={200: OutputSerializer},
        tags=["usage"],
    )
    def get(self, request: Request) -> Response:
        """Usage of the caller's tenant (never another tenant's)."""
        params = self.validated(self.InputSerializer, request.query_params, error=ValidationFailed)
        report = usage_report(principal=self.principal, days=params["days"])
        return Response(self.OutputSerializer(report).data)


class _KeyOutputSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = [
            "prefix",
            "name",
            "status",
            "scopes",
            "allowed_models",
            "created_at",
            "created_by",
            "expires_at",
            "grace_until",
            "revoked_at",
            "last_used_at",
        ]

    def get_status(self, key: ApiKey) -> str:
        return api_key_status(key=key)


class _KeyListOutputSerializer(serializers.Serializer):
    keys = _KeyOutputSerializer(many=True)


class ApiKeyListApi(GovernedApi):
    """``GET /v1/keys``: the caller's tenant's keys (prefixes and metadata, never secrets)."""

    scope = SCOPE_KEYS_READ
    endpoint = "keys.list"
    OutputSerializer = _KeyOutputSerializer

    @extend_schema(operation_id="keys_list", responses={200: _KeyListOutputSerializer}, tags=["keys"])
    def get(self, request: Request) -> Response:
        """Every key of the caller's tenant, newest first."""
        keys = self.scoped(api_keys_of_tenant(tenant_id=self.principal.tenant_id))
        return Response({"keys": self.OutputSerializer(keys, many=True).data})


class ApiKeyGetApi(GovernedApi):
    """``GET /v1/keys/{prefix}``: one of the caller's tenant's keys; another tenant's is 404."""

    scope = SCOPE_KEYS_READ
    endpoint = "keys.get"
    OutputSerializer = _KeyOutputSerializer

    @extend_schema(operation_id="keys_retrieve", responses={200: _KeyOutputSerializer}, tags=["keys"])
    def get(self, request: Request, prefix: str) -> Response:
        """The key with ``prefix`` if it belongs to the caller's tenant."""
        key = self.get_object_or_404(ApiKey.objects.all(), prefix=prefix)
        return Response(self.OutputSerializer(key).data)
