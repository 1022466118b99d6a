"""REST v1: model listing, model detail and synchronous prediction.

Thin views: each parses its protocol's shape and drives one
:class:`gateway.pipeline.GovernedCall`; the pipeline owns every governance
step, so no endpoint can skip one.
"""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from gateway.errors import InvalidInput, MalformedRequest, ModelNotFound
from gateway.openapi import PROBLEM_RESPONSES
from gateway.pipeline import GovernedCall, model_permitted_for_key
from inference.selectors import model_catalog_list, model_detail_get
from policy.services import policy_models_visible


def _model_summary(info: Any) -> dict[str, Any]:
    return {
        "name": info.name,
        "version": info.active_version,
        "versions": list(info.versions),
        "signature": info.signature,
        "labels": list(info.labels),
        "risk_tier": info.risk_tier,
        "region": info.region,
        "provider": info.provider,
    }


def visible_models(principal: Any) -> list[Any]:
    """The active models this key may call: key allow-list, then the policy decision."""
    catalog = [info for info in model_catalog_list() if model_permitted_for_key(principal=principal, model_name=info.name)]
    facts = {info.name: info.facts() for info in catalog}
    allowed = {f.name for f in policy_models_visible(principal=principal, models=list(facts.values()))}
    return [info for info in catalog if info.name in allowed]


class ModelSummarySerializer(serializers.Serializer):
    """A model as listed to a tenant."""

    name = serializers.CharField()
    version = serializers.IntegerField()
    versions = serializers.ListField(child=serializers.IntegerField())
    signature = serializers.DictField()
    labels = serializers.ListField(child=serializers.JSONField())
    risk_tier = serializers.CharField()
    region = serializers.CharField()
    provider = serializers.CharField()


class ModelsListApi(APIView):
    """``GET /v1/models``: the models this key may call (policy-filtered)."""

    class OutputSerializer(serializers.Serializer):
        models = ModelSummarySerializer(many=True)

    @extend_schema(operation_id="models_list", responses={200: OutputSerializer, **PROBLEM_RESPONSES}, tags=["models"])
    def get(self, request: Request) -> JsonResponse:
        with GovernedCall(request._request, scope="predict", endpoint="models.list") as call:
            principal = call.authenticate()
            models = [_model_summary(info) for info in visible_models(principal)]
            headers = call.record_success()
        return JsonResponse({"models": models}, headers=headers)


class ModelDetailApi(APIView):
    """``GET /v1/models/{name}``: metadata, signature, labels, versions, model card."""

    class OutputSerializer(ModelSummarySerializer):
        model_card = serializers.CharField()
        metrics = serializers.DictField()

    @extend_schema(operation_id="models_retrieve", responses={200: OutputSerializer, **PROBLEM_RESPONSES}, tags=["models"])
    def get(self, request: Request, name: str) -> JsonResponse:
        with GovernedCall(request._request, scope="predict", endpoint="models.detail") as call:
            principal = call.authenticate()
            visible = {info.name for info in visible_models(principal)}
            info = model_detail_get(name=name) if name in visible else None
            if info is None:
                raise ModelNotFound(f"No model named {name!r} is available to this key.")
            body = _model_summary(info) | {"model_card": info.model_card, "metrics": info.metrics}
            headers = call.record_success()
        return JsonResponse(body, headers=headers)


class PredictionSerializer(serializers.Serializer):
    """One instance's prediction."""

    label = serializers.JSONField()
    probabilities = serializers.ListField(child=serializers.FloatField())
    needs_review = serializers.BooleanField()


class ModelPredictApi(APIView):
    """``POST /v1/models/{name}/predict``: a governed synchronous prediction."""

    # The pipeline reads the raw body itself (after checking the plan's size limit).
    parser_classes: list = []

    class InputSerializer(serializers.Serializer):
        instances = serializers.ListField(child=serializers.ListField(child=serializers.FloatField()), min_length=1)
        purpose = serializers.CharField(required=False, max_length=100)
        version = serializers.IntegerField(required=False, min_value=1)

    class OutputSerializer(serializers.Serializer):
        model = serializers.CharField()
        version = serializers.IntegerField()
        request_id = serializers.CharField()
        predictions = PredictionSerializer(many=True)

    @extend_schema(
        operation_id="models_predict",
        request=InputSerializer,
        responses={200: OutputSerializer, **PROBLEM_RESPONSES, 413: OpenApiResponse(description="Body too large")},
        parameters=[OpenApiParameter("X-Purpose", str, OpenApiParameter.HEADER, required=False)],
        examples=[
            OpenApiExample("one digit", request_only=True, value={"instances": [[0.0] * 64], "purpose": "research"})
        ],
        tags=["models"],
    )
    def post(self, request: Request, name: str) -> JsonResponse:
        with GovernedCall(request._request, scope="predict", endpoint="models.predict") as call:
            call.authenticate()
            body = call.parse_body()
            if not isinstance(body, dict):
                raise MalformedRequest("The body must be a JSON object with an 'instances' list.")
            unknown = set(body) - {"instances", "purpose", "version"}
            if unknown:
                raise InvalidInput(f"Unknown field(s): {', '.join(sorted(unknown))}.")
            instances = body.get("instances")
            if not isinstance(instances, list) or not instances:
                raise InvalidInput("'instances' must be a non-empty list of instances.")
            version = body.get("version")
            if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
                raise InvalidInput("'version' must be a positive integer.")
            purpose = request.META.get("HTTP_X_PURPOSE") or body.get("purpose")
            if purpose is not None and not isinstance(purpose, str):
                raise InvalidInput("'purpose' must be a string.")
            call.resolve_model(name=name, version=version)
            call.decide(purpose=purpose)
            call.reserve(units=len(instances))
            batch = call.validate(instances)
            result = call.infer(batch)
            headers = call.record_success()
        probabilities = result.probabilities.tolist()
        predictions = [
            {"label": label, "probabilities": probs, "needs_review": flag}
            for label, probs, flag in zip(result.labels, probabilities, result.needs_review, strict=True)
        ]
        return JsonResponse(
            {
                "model": result.model_name,
                "version": result.model_version,
                "request_id": request._request.request_id,
                "predictions": predictions,
            },
            headers=headers,
        )
