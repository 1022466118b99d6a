"""The minimal app's one view: parse the JSON body, ``session.run``, answer with ``JsonResponse``.

The same work as the gateway's bench ``bare`` view (B4) and the same JSON
out, minus everything the gateway adds: middleware, the model registry,
request ids.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
from django.conf import settings
from django.http import HttpRequest, HttpResponseNotAllowed, JsonResponse
from django.urls import path


def _session() -> ort.InferenceSession:
    # The options of inference.runtime.session_options, restated: this app imports nothing of the gateway.
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.INFERENCE_INTRA_OP_THREADS
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(settings.BENCH_MODEL_PATH, options, providers=["CPUExecutionProvider"])


SESSION = _session()
INPUT_NAME = SESSION.get_inputs()[0].name
OUTPUT_NAME = SESSION.get_outputs()[0].name


def predict(request: HttpRequest, name: str) -> JsonResponse | HttpResponseNotAllowed:
    """``POST /predict/<name>``: class probabilities and the top label per instance."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    body = json.loads(request.body)
    batch = np.asarray(body["instances"], dtype=np.float32)
    probabilities = SESSION.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
    labels = probabilities.argmax(axis=1).tolist()
    predictions = [
        {"label": label, "probabilities": probs, "needs_review": False}
        for label, probs in zip(labels, probabilities.tolist(), strict=True)
    ]
    return JsonResponse({"model": name, "predictions": predictions})


urlpatterns = [path("predict/<str:name>", predict)]
