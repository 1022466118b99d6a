"""The Open Inference Protocol (KServe v2) at the root paths standard clients expect.

Same governed pipeline as REST v1 (:class:`gateway.pipeline.GovernedCall`);
only the wire format differs: ``inputs``/``outputs`` tensors with ``name``,
``shape``, ``datatype`` and flat or nested ``data``, the binary tensor data
extension (``Inference-Header-Content-Length``) that tritonclient uses by
default, and the protocol's error shape ``{"error": "..."}`` (with our stable
``code`` and ``request_id`` as extra members, which clients ignore).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from core.errors import DomainError, InvalidInput, MalformedRequest
from core.logging import current_request_id
from gateway.api.params import MAX_VERSION, requested_purpose, visible_models
from gateway.pipeline import GovernedCall, body_read, json_parse
from inference.errors import ModelNotFound

logger = logging.getLogger("gateway.v2")

SERVER_NAME = "maas-gateway"
SERVER_VERSION = "1.0.0"

_DTYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def v2_error(*, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> JsonResponse:
    """The protocol's error shape, flagged so the middleware leaves it as it is."""
    response = JsonResponse({"error": message, "code": code, "request_id": current_request_id()}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    response.is_v2_error = True  # type: ignore[attr-defined]
    return response


def v2_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Map every exception of a v2 view to the v2 error shape; never a traceback."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            response = view(request, *args, **kwargs)
            if response.status_code == 405:
                return v2_error(
                    status=405,
                    message=f"Method {request.method} is not allowed here.",
                    code="method_not_allowed",
                    headers={"Allow": response.get("Allow", "")},
                )
            return response
        except DomainError as exc:
            return v2_error(status=exc.status, message=exc.detail, code=exc.code, headers=exc.headers)
        except Exception:
            logger.exception("v2 failure")
            return v2_error(status=500, message="internal error; quote the request id", code="internal_error")

    return csrf_exempt(wrapper)


def _version(version: str | None) -> int | None:
    if version is None:
        return None
    # isdecimal, not isdigit: "²" is a digit that int() refuses; the registry holds at most MAX_VERSION.
    if not version.isdecimal() or len(version) > 10 or not 1 <= int(version) <= MAX_VERSION:
        raise ModelNotFound(f"Model version {version[:20]!r} does not exist.")
    return int(version)


@v2_view
@require_GET
def health_live(request: HttpRequest) -> JsonResponse:
    """``GET /v2/health/live``."""
    return JsonResponse({"live": True})


@v2_view
@require_GET
def health_ready(request: HttpRequest) -> HttpResponse:
    """``GET /v2/health/ready``: the gateway's readiness, in the protocol's shape."""
    from core.health import readiness_report

    ok, _ = readiness_report()
    return JsonResponse({"ready": ok}, status=200 if ok else 503)


@v2_view
@require_GET
def server_metadata(request: HttpRequest) -> JsonResponse:
    """``GET /v2``."""
    return JsonResponse({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": ["binary_tensor_data"]})


def _visible_model(call: GovernedCall, name: str, version: str | None) -> Any:
    principal = call.authenticate()
    if name not in {info.name for info in visible_models(principal)}:
        call.hidden_model_note(name=name)
        raise ModelNotFound(f"No model named {name!r} is available to this key.")
    return call.resolve_model(name=name, version=_version(version))


@v2_view
@require_GET
def model_metadata(request: HttpRequest, name: str, version: str | None = None) -> JsonResponse:
    """``GET /v2/models/{name}[/versions/{v}]``."""
    with GovernedCall(request, scope="predict", endpoint="v2.model_metadata") as call:
        model = _visible_model(call, name, version)
        info = next(i for i in visible_models(call.principal) if i.name == name)
        body = {
            "name": model.name,
            "versions": [str(v) for v in info.versions],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": model.input_name, "datatype": "FP32", "shape": [-1, model.input_width]}],
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(model.labels)]},
                {"name": "label", "datatype": "INT64", "shape": [-1]},
            ],
        }
        headers = call.record_success()
    return JsonResponse(body, headers=headers)


@v2_view
@require_GET
def model_ready(request: HttpRequest, name: str, version: str | None = None) -> JsonResponse:
    """``GET /v2/models/{name}[/versions/{v}]/ready``."""
    with GovernedCall(request, scope="predict", endpoint="v2.model_ready") as call:
        model = _visible_model(call, name, version)
        headers = call.record_success()
    return JsonResponse({"name": model.name, "ready": True}, headers=headers)


def _split_body(request: HttpRequest, max_bytes: int) -> tuple[dict[str, Any], bytes]:
    """The JSON inference header and the binary tensor data after it, bounded by the plan.

    The shared pipeline helpers refuse an over-limit declared length before the
    body is read and map undecodable JSON (deep nesting included) to 400; the
    errors they raise reach the client in the v2 shape through :func:`v2_view`.
    """
    raw = body_read(request, max_bytes=max_bytes)
    header_len = request.META.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
    if header_len is not None:
        if not header_len.isdecimal() or int(header_len) > len(raw):
            raise MalformedRequest("Inference-Header-Content-Length does not fit the body.")
        head, binary = raw[: int(header_len)], raw[int(header_len) :]
    else:
        head, binary = raw, b""
    if not head:
        raise MalformedRequest("The request body is empty; send an inference request object.")
    body = json_parse(head, what="The inference request")
    if not isinstance(body, dict):
        raise MalformedRequest("The inference request must be a JSON object.")
    return body, binary


def _input_tensor(body: dict[str, Any], binary: bytes, *, input_name: str, width: int) -> np.ndarray:
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidInput(f"'inputs' must hold exactly one tensor named {input_name!r}.")
    tensor = inputs[0]
    if tensor.get("name") != input_name:
        raise InvalidInput(f"Unknown input {tensor.get('name')!r}; this model's input is {input_name!r}.")
    datatype = tensor.get("datatype")
    if datatype not in _DTYPES or datatype == "BOOL":
        raise InvalidInput(f"Unsupported datatype {datatype!r}; send FP32 (or another numeric type).")
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise InvalidInput(f"'shape' must be [batch, {width}].")
    if shape[1] != width:
        raise InvalidInput(f"Input shape {shape} has width {shape[1]}; expected {width}.")
    if shape[0] == 0:
        raise InvalidInput("The batch is empty.")
    count = shape[0] * shape[1]
    parameters = _parameters(tensor, "An input's")
    binary_size = parameters.get("binary_data_size")
    if binary_size is not None:
        dtype = np.dtype(_DTYPES[datatype])
        if not isinstance(binary_size, int) or binary_size != len(binary) or binary_size != count * dtype.itemsize:
            raise InvalidInput("binary_data_size does not match the shape, the datatype or the body.")
        array = np.frombuffer(binary, dtype=dtype.newbyteorder("<"), count=count)
    else:
        data = tensor.get("data")
        if not isinstance(data, list):
            raise InvalidInput("'data' must be a list (flat or nested) of numbers.")
        array = _numbers(data)
        if array.size != count:
            raise InvalidInput(f"'data' has {array.size} values; shape {shape} needs {count}.")
    return array.astype(np.float32, copy=False).reshape(shape[0], shape[1])


def _numbers(data: list[Any]) -> np.ndarray:
    """JSON tensor data as float64: numbers only (no booleans, numeric strings or nulls), nested evenly."""
    try:
        leaves = np.asarray(data, dtype=object)
    except ValueError:
        raise InvalidInput("'data' must contain only numbers, nested evenly.") from None
    # numpy would quietly turn true into 1.0 and "2.5" into 2.5; the protocol's numeric tensors hold numbers.
    if not set(map(type, leaves.ravel().tolist())) <= {int, float}:
        raise InvalidInput("'data' must contain only numbers, nested evenly.")
    try:
        return leaves.astype(np.float64)
    except OverflowError:
        raise InvalidInput("'data' holds an integer beyond the floating-point range.") from None


@v2_view
@require_POST
def model_infer(request: HttpRequest, name: str, version: str | None = None) -> HttpResponse:
    """``POST /v2/models/{name}[/versions/{v}]/infer``."""
    with GovernedCall(request, scope="predict", endpoint="v2.infer") as call:
        principal = call.authenticate()
        body, binary = _split_body(request, principal.limits.max_body_bytes)
        model = call.resolve_model(name=name, version=_version(version))
        parameters = _parameters(body, "The request's")
        if not isinstance(body.get("id", ""), str):
            raise InvalidInput("'id' must be a string.")
        purpose = requested_purpose(header=request.META.get("HTTP_X_PURPOSE"), body=parameters.get("purpose"))
        # Decided before the tensor is checked against the model: an input error would confirm a hidden model.
        call.decide(purpose=purpose)
        array = _input_tensor(body, binary, input_name=model.input_name, width=model.input_width)
        requested = _requested_outputs(body, parameters)
        call.reserve(units=array.shape[0])
        batch = call.validate(array)
        result = call.infer(batch)
        headers = call.record_success()
    request_id = body.get("id") if isinstance(body.get("id"), str) else current_request_id()
    return _infer_response(result, requested, request_id=request_id, headers=headers)


def _requested_outputs(body: dict[str, Any], parameters: dict[str, Any]) -> dict[str, bool]:
    """Output name -> binary?  Defaults to every output."""
    default_binary = _flag(parameters, "binary_data_output", default=False)
    if "outputs" not in body:
        return {"probabilities": default_binary, "label": default_binary}
    outputs = body["outputs"]
    if not isinstance(outputs, list) or not outputs:
        raise InvalidInput("'outputs' must be a non-empty list.")
    requested: dict[str, bool] = {}
    for item in outputs:
        if not isinstance(item, dict) or item.get("name") not in ("probabilities", "label"):
            raise InvalidInput("Unknown output requested; this model offers 'probabilities' and 'label'.")
        params = _parameters(item, "An output's")
        requested[item["name"]] = _flag(params, "binary_data", default=default_binary)
    return requested


def _parameters(holder: dict[str, Any], whose: str) -> dict[str, Any]:
    """The protocol's ``parameters`` member: absent, or an object (null, lists, strings are refused)."""
    parameters = holder.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidInput(f"{whose} 'parameters' must be an object.")
    return parameters


def _flag(parameters: dict[str, Any], name: str, *, default: bool) -> bool:
    """A boolean protocol parameter; anything else is refused rather than guessed at."""
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"'{name}' must be true or false.")
    return value


def _infer_response(
    result: Any, requested: dict[str, bool], *, request_id: str, headers: dict[str, str]
) -> HttpResponse:
    tensors = {
        "probabilities": ("FP32", np.ascontiguousarray(result.probabilities, dtype=np.float32)),
        "label": ("INT64", np.asarray([int(label) for label in result.labels], dtype=np.int64)),
    }
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, binary in requested.items():
        datatype, array = tensors[name]
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blob = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.reshape(-1).tolist()
        outputs.append(entry)
    payload = {
        "model_name": result.model_name,
        "model_version": str(result.model_version),
        "id": request_id,
        "parameters": {"needs_review": result.needs_review},
        "outputs": outputs,
    }
    if not blobs:
        return JsonResponse(payload, headers=headers)
    head = json.dumps(payload).encode()
    response = HttpResponse(head + b"".join(blobs), content_type="application/octet-stream", headers=headers)
    response["Inference-Header-Content-Length"] = str(len(head))
    return response


__all__ = [
    "health_live",
    "health_ready",
    "model_infer",
    "model_metadata",
    "model_ready",
    "server_metadata",
]
