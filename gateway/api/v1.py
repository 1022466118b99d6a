"""REST v1: model listing, model detail and synchronous prediction.

Thin views on :class:`gateway.api.base.GovernedApi`: each parses its
protocol's shape and drives the request's governed call (``self.call``);
the base and the pipeline own every governance step, so no endpoint can
skip one.
"""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request

from gateway.api.base import GovernedApi
from gateway.api.params import (
    MAX_VERSION,
    PURPOSE_HEADER,
    PURPOSE_MAX_LENGTH,
    InstancesField,
    StrictCharField,
    StrictIntegerField,
    StrictSerializer,
    requested_purpose,
    visible_models,
)
from gateway.openapi import (
    EXAMPLE_DIGIT,
    EXAMPLE_PROBABILITIES,
    MODEL_NAME_PARAMETER,
    RATE_LIMIT_HEADERS,
    RETRY_AFTER_HEADER,
    SERVER_TIMING_HEADER,
    problem_responses,
)
from gateway.pipeline import rollout_assignment
from inference.errors import ModelNotFound
from inference.selectors import model_detail_get
from policy.facts import decision_facts
from policy.services import policy_models_visible
from policy.types import ModelFacts
from tenants.principal import SCOPE_PREDICT

# The decision facts of every governed answer (policy.facts), next to X-Request-ID.
DECISION_HEADERS = [
    OpenApiParameter(name, str, OpenApiParameter.HEADER, response=[200], description=description)
    for name, description in (
        ("X-Policy-Versions", "`name@version` of every policy that decided this answer, comma-separated."),
        ("X-Obligations", "Obligations applied: `human_review;threshold=...`, `data_minimisation;raw_input=...`."),
    )
]


def _model_summary(info: Any) -> dict[str, Any]:
    return {
        "name": info.name,
        "version": info.active_version,
        "versions": list(info.versions),
        "signature": info.signature,
        "labels": list(info.labels),
        "output_kind": info.output_kind,
        "risk_tier": info.risk_tier,
        "region": info.region,
        "provider": info.provider,
    }


class ModelSummarySerializer(serializers.Serializer):
    """A model as listed to a tenant."""

    name = serializers.CharField()
    version = serializers.IntegerField()
    versions = serializers.ListField(child=serializers.IntegerField())
    signature = serializers.DictField()
    labels = serializers.ListField(child=serializers.JSONField())
    output_kind = serializers.ChoiceField(
        choices=["probabilities", "logits", "regression", "tensor"],
        help_text="How predictions read: class probabilities (or logits, softmax applied), regression values, "
        "or raw output tensors.",
    )
    risk_tier = serializers.CharField()
    region = serializers.CharField()
    provider = serializers.CharField()


class ModelsListApi(GovernedApi):
    """``GET /v1/models``: the models this key may call (policy-filtered)."""

    scope = SCOPE_PREDICT
    endpoint = "models.list"

    class OutputSerializer(serializers.Serializer):
        models = ModelSummarySerializer(many=True)

    @extend_schema(
        operation_id="models_list",
        responses={200: OutputSerializer, **problem_responses(401, 403, 503)},
        tags=["models"],
    )
    def get(self, request: Request) -> JsonResponse:
        return JsonResponse({"models": [_model_summary(info) for info in visible_models(self.principal)]})


class ModelDetailApi(GovernedApi):
    """``GET /v1/models/{name}``: metadata, signature, labels, versions, model card."""

    scope = SCOPE_PREDICT
    endpoint = "models.detail"

    class OutputSerializer(ModelSummarySerializer):
        model_card = serializers.CharField(help_text="Free-text notes of the active version's model card.")
        model_cards = serializers.ListField(
            child=serializers.DictField(),
            help_text="The structured model card (intended purpose, out-of-scope uses, training data, metrics per "
            "class, limitations, risk tier and rationale, reference profile summary) of every version this key "
            "may use, oldest first.",
        )
        metrics = serializers.DictField()
        plausible_range = serializers.ListField(
            child=serializers.FloatField(),
            allow_null=True,
            help_text="Regression: [low, high]; a value outside it needs human review. Null otherwise.",
        )
        assigned_version = serializers.IntegerField(
            help_text="The version an unpinned prediction by this key is served now (a canary during a rollout)."
        )
        rollout = serializers.DictField(
            allow_null=True,
            help_text="During a rollout: its `id` and this key's `arm` (`stable` or `canary`); null otherwise.",
        )

    @extend_schema(
        operation_id="models_retrieve",
        parameters=[MODEL_NAME_PARAMETER],
        responses={200: OutputSerializer, **problem_responses(401, 403, 404, 503)},
        tags=["models"],
    )
    def get(self, request: Request, name: str) -> JsonResponse:
        visible = {info.name for info in visible_models(self.principal)}
        info = model_detail_get(name=name) if name in visible else None
        if info is None:
            self.call.hidden_model_note(name=name)
            raise ModelNotFound(f"No model named {name!r} is available to this key.")
        usable = {
            facts.version
            for facts in policy_models_visible(
                principal=self.principal,
                models=[
                    ModelFacts(
                        name=info.name, version=card["version"], risk_tier=card["risk_tier"], region=card["region"]
                    )
                    for card in info.version_cards
                ],
            )
        }
        body = _model_summary(info) | {
            "model_card": info.model_card,
            "model_cards": [card for card in info.version_cards if card["version"] in usable],
            "metrics": info.metrics,
            "plausible_range": list(info.plausible_range) if info.plausible_range else None,
        }
        body |= rollout_assignment(principal=self.principal, name=info.name, stable_version=info.active_version)
        return JsonResponse(body)


class PredictionSerializer(serializers.Serializer):
    """One instance's prediction; its members depend on the model's ``output_kind``."""

    label = serializers.JSONField(required=False, help_text="Classifiers: the predicted label (integer or string).")
    probabilities = serializers.ListField(
        child=serializers.FloatField(), required=False, help_text="Classifiers: one probability per label."
    )
    value = serializers.JSONField(required=False, help_text="Regression: the predicted value (or list of values).")
    outputs = serializers.DictField(
        required=False, help_text="Raw tensors: every output of the graph, by name, for this instance."
    )
    needs_review = serializers.BooleanField()


class DecisionFactsSerializer(serializers.Serializer):
    """Who decided this answer and what it obliged (``policy.facts``)."""

    policy_versions = serializers.ListField(child=serializers.CharField(), help_text="`name@version` of each policy.")
    obligations = serializers.ListField(
        child=serializers.DictField(),
        help_text="`human_review` (threshold) and `data_minimisation` (raw input discarded or retained, days).",
    )


def predictions_body(result: Any) -> list[dict[str, Any]]:
    """One JSON object per instance, by output kind (shared by REST predictions)."""
    if result.kind in ("probabilities", "logits"):
        rows = zip(result.labels, result.probabilities.tolist(), result.needs_review, strict=True)
        return [{"label": label, "probabilities": probs, "needs_review": flag} for label, probs, flag in rows]
    if result.kind == "regression":
        return [
            {"value": value, "needs_review": flag}
            for value, flag in zip(result.values.tolist(), result.needs_review, strict=True)
        ]
    columns = {name: array.tolist() for name, array in result.outputs.items()}
    return [
        {"outputs": {name: column[i] for name, column in columns.items()}, "needs_review": flag}
        for i, flag in enumerate(result.needs_review)
    ]


class ModelPredictApi(GovernedApi):
    """``POST /v1/models/{name}/predict``: a governed synchronous prediction."""

    scope = SCOPE_PREDICT
    endpoint = "models.predict"

    class InputSerializer(StrictSerializer):
        instances = InstancesField(
            help_text="One entry per instance: for a one-input model its values as (nested) lists of the input's "
            "shape (see `signature`), or, for any model, an object keyed by input name.",
        )
        purpose = StrictCharField(
            required=False,
            allow_null=True,
            allow_blank=True,
            max_length=PURPOSE_MAX_LENGTH,
            help_text="Why the prediction is requested (policy); the `X-Purpose` header takes precedence.",
        )
        version = StrictIntegerField(
            required=False,
            allow_null=True,
            min_value=1,
            max_value=MAX_VERSION,
            help_text="Pin a version; absent or null: the active one.",
        )

        class Meta:
            reject_unknown_fields = True

    class OutputSerializer(serializers.Serializer):
        model = serializers.CharField()
        version = serializers.IntegerField()
        request_id = serializers.CharField()
        predictions = PredictionSerializer(many=True)
        decision = DecisionFactsSerializer(help_text="Also in the X-Policy-Versions and X-Obligations headers.")

    @extend_schema(
        operation_id="models_predict",
        request={"application/json": InputSerializer},
        responses={200: OutputSerializer, **problem_responses(400, 401, 403, 404, 413, 415, 429, 503)},
        parameters=[
            MODEL_NAME_PARAMETER,
            PURPOSE_HEADER,
            *RATE_LIMIT_HEADERS,
            RETRY_AFTER_HEADER,
            *DECISION_HEADERS,
            SERVER_TIMING_HEADER,
        ],
        examples=[
            OpenApiExample("one digit", request_only=True, value={"instances": [EXAMPLE_DIGIT], "purpose": "research"}),
            OpenApiExample(
                "prediction",
                response_only=True,
                status_codes=["200"],
                value={
                    "model": "digits",
                    "version": 1,
                    "request_id": "9f1c2e7a4b5d4c3e8a6f0b1d2c3e4f5a",
                    "predictions": [{"label": 0, "probabilities": EXAMPLE_PROBABILITIES, "needs_review": False}],
                    "decision": {
                        "policy_versions": ["global-baseline@3"],
                        "obligations": [{"type": "data_minimisation", "raw_input": "discarded"}],
                    },
                },
            ),
        ],
        tags=["models"],
    )
    def post(self, request: Request, name: str) -> JsonResponse:
        call = self.call
        body = self.validated(self.InputSerializer, call.parse_body())
        instances = body["instances"]
        purpose = requested_purpose(header=request.META.get("HTTP_X_PURPOSE"), body=body.get("purpose"))
        call.resolve_model(name=name, version=body.get("version"))
        call.decide(purpose=purpose)
        call.reserve(units=len(instances))
        result = call.infer(call.validate(instances))
        return JsonResponse(
            {
                "model": result.model_name,
                "version": result.model_version,
                "request_id": request._request.request_id,
                "predictions": predictions_body(result),
                "decision": decision_facts(call.decision),
            }
        )
