"""Benchmark-only endpoints, mounted only when ``BENCH_ENDPOINTS=true``.

They make each governance stage's cost visible by composing the very same
pipeline steps as the real endpoint, minus later stages:

- ``bare``: parse the JSON body, run the same ONNX Runtime session, return
  the same JSON (the baseline "B4": a plain Django view, no governance);
- ``auth``: + authentication and scope;
- ``auth-quota``: + the quota reservation;
- ``auth-quota-policy``: + the policy decision;
- the full governed path is the real ``/v1/models/{name}/predict`` (+ audit).
"""

from __future__ import annotations

import json

import numpy as np
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from gateway.pipeline import GovernedCall
from inference.selectors import model_serving_get
from inference.services import model_predict

STAGES = {
    "auth": ("auth",),
    "auth-quota": ("auth", "quota"),
    "auth-quota-policy": ("auth", "quota", "policy"),
}


def _answer(request: HttpRequest, model, prediction, headers: dict[str, str] | None = None) -> JsonResponse:
    predictions = [
        {"label": label, "probabilities": probs, "needs_review": False}
        for label, probs in zip(prediction.labels, prediction.probabilities.tolist(), strict=True)
    ]
    return JsonResponse(
        {"model": model.name, "version": model.version, "request_id": request.request_id, "predictions": predictions},
        headers=headers or {},
    )


@csrf_exempt
@require_POST
def bare_predict(request: HttpRequest, name: str) -> JsonResponse:
    """B4: the same work as predict with no authentication, quota, policy or audit."""
    body = json.loads(request.body)
    model = model_serving_get(name=name, version=None)
    batch = np.asarray(body["instances"], dtype=np.float32)
    return _answer(request, model, model_predict(model=model, batch=batch))


def _staged(stages: tuple[str, ...]):
    @csrf_exempt
    @require_POST
    def view(request: HttpRequest, name: str) -> JsonResponse:
        call = GovernedCall(request, scope="predict", endpoint="bench")
        call.authenticate()
        body = call.parse_body()
        instances = body["instances"]
        model = call.resolve_model(name=name, version=None)
        if "policy" in stages:
            call.decide(purpose=body.get("purpose"))
        if "quota" in stages:
            call.reserve(units=len(instances))
        batch = call.validate(instances)
        prediction = model_predict(model=model, batch=batch)
        return _answer(request, model, prediction, call.response_headers())

    return view


urlpatterns = [path("bench/bare/<str:name>/predict", bare_predict)] + [
    path(f"bench/{variant}/<str:name>/predict", _staged(stages)) for variant, stages in STAGES.items()
]
