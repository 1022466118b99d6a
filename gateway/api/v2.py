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
import math
import struct
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
from inference.signature import NUMPY_DTYPES, V2_DATATYPES, OutputKind, labels_are_strings

logger = logging.getLogger("gateway.v2")

SERVER_NAME = "maas-gateway"
SERVER_VERSION = "1.0.0"


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
            "inputs": [{"name": t.name, "datatype": t.v2_datatype, "shape": t.v2_shape} for t in model.inputs],
            "outputs": output_metadata(model),
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


def output_metadata(model: Any) -> list[dict[str, Any]]:
    """The outputs a model answers, as the protocol's metadata states them (by output kind)."""
    if model.output_kind in OutputKind.CLASSIFIERS:
        return [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(model.labels)]},
            {"name": "label", "datatype": "BYTES" if labels_are_strings(model.labels) else "INT64", "shape": [-1]},
        ]
    outputs = model.outputs
    if model.output_kind == OutputKind.REGRESSION:
        outputs = [t for t in outputs if t.name == model.output_name]
    return [{"name": t.name, "datatype": t.v2_datatype, "shape": t.v2_shape} for t in outputs]


def _input_tensors(body: dict[str, Any], binary: bytes, *, model: Any) -> dict[str, np.ndarray]:
    """Every input tensor of the request, by name, typed and shaped as the model's signature says.

    The datatype must be the signature's (as Triton requires); the shape must
    have the signature's rank and fixed axes; binary tensors follow the JSON
    header in the order of ``inputs``.
    """
    specs = {spec.name: spec for spec in model.inputs}
    wanted = ", ".join(spec.describe() for spec in model.inputs)
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, dict) for t in inputs):
        raise InvalidInput(f"'inputs' must be a non-empty list of tensors; this model takes {wanted}.")
    feeds: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in inputs:
        name = tensor.get("name")
        if not isinstance(name, str) or name not in specs:
            raise InvalidInput(f"Unknown input {str(name)[:100]!r}; this model takes {wanted}.")
        if name in feeds:
            raise InvalidInput(f"Input {name!r} is sent twice.")
        spec = specs[name]
        datatype = tensor.get("datatype")
        if datatype != spec.v2_datatype:
            raise InvalidInput(f"Input {name!r} is {spec.v2_datatype}; got datatype {str(datatype)[:20]!r}.")
        shape = tensor.get("shape")
        expected = [-1, *spec.instance_shape]
        if (
            not isinstance(shape, list)
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
            or len(shape) != len(expected)
            or shape[1:] != expected[1:]
        ):
            raise InvalidInput(f"Input {name!r} must have shape {expected} (-1: the batch); got {str(shape)[:60]}.")
        if shape[0] == 0:
            raise InvalidInput("The batch is empty.")
        count = math.prod(shape)
        dtype = np.dtype(NUMPY_DTYPES[datatype])
        binary_size = _parameters(tensor, "An input's").get("binary_data_size")
        if binary_size is not None:
            if (
                not isinstance(binary_size, int)
                or isinstance(binary_size, bool)
                or binary_size != count * dtype.itemsize
                or offset + binary_size > len(binary)
            ):
                raise InvalidInput("binary_data_size does not match the shape, the datatype or the body.")
            array = np.frombuffer(binary[offset : offset + binary_size], dtype=dtype.newbyteorder("<"), count=count)
            offset += binary_size
        else:
            data = tensor.get("data")
            if not isinstance(data, list):
                raise InvalidInput("'data' must be a list (flat or nested) of values.")
            array = _values(data, dtype=dtype)
            if array.size != count:
                raise InvalidInput(f"'data' has {array.size} values; shape {shape} needs {count}.")
        feeds[name] = array.astype(dtype.newbyteorder("="), copy=False).reshape(shape)
    if offset != len(binary):
        raise InvalidInput("The binary data after the header does not match the tensors' binary_data_size.")
    return feeds


def _values(data: list[Any], *, dtype: np.dtype) -> np.ndarray:
    """JSON tensor data of ``dtype``: booleans for BOOL, integers for integer types, numbers for floats.

    numpy would quietly turn true into 1.0 and "2.5" into 2.5; the protocol's tensors hold their own type.
    """
    try:
        leaves = np.asarray(data, dtype=object)
    except ValueError:
        raise InvalidInput("'data' must be nested evenly.") from None
    kinds = set(map(type, leaves.ravel().tolist()))
    if dtype.kind == "b":
        allowed, what = {bool}, "true or false"
    elif dtype.kind in "iu":
        allowed, what = {int}, "integers"
    else:
        allowed, what = {int, float}, "numbers"
    if not kinds <= allowed:
        raise InvalidInput(f"'data' of a {V2_DATATYPES[dtype.name]} tensor must contain only {what}, nested evenly.")
    if dtype.kind in "iu":
        try:
            wide = leaves.astype(np.int64)
        except OverflowError:
            raise InvalidInput("'data' holds an integer beyond the 64-bit range.") from None
        info = np.iinfo(dtype)
        if wide.size and (wide.min() < info.min or wide.max() > info.max):
            raise InvalidInput(f"'data' holds an integer beyond the {V2_DATATYPES[dtype.name]} range.")
        return wide.astype(dtype)
    try:
        return leaves.astype(dtype)
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
        # During a rollout the decision may route this caller to the canary.
        model = call.model
        feeds = _input_tensors(body, binary, model=model)
        requested = _requested_outputs(body, parameters, offered=[o["name"] for o in output_metadata(model)])
        call.reserve(units=max(array.shape[0] for array in feeds.values()))
        batch = call.validate(feeds)
        result = call.infer(batch)
        headers = call.record_success()
    request_id = body.get("id") if isinstance(body.get("id"), str) else current_request_id()
    return _infer_response(result, requested, request_id=request_id, headers=headers)


def _requested_outputs(body: dict[str, Any], parameters: dict[str, Any], *, offered: list[str]) -> dict[str, bool]:
    """Output name -> binary?  Defaults to every output the model offers."""
    default_binary = _flag(parameters, "binary_data_output", default=False)
    if "outputs" not in body:
        return dict.fromkeys(offered, default_binary)
    outputs = body["outputs"]
    if not isinstance(outputs, list) or not outputs:
        raise InvalidInput("'outputs' must be a non-empty list.")
    requested: dict[str, bool] = {}
    for item in outputs:
        if not isinstance(item, dict) or item.get("name") not in offered:
            raise InvalidInput(f"Unknown output requested; this model offers {', '.join(map(repr, offered))}.")
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


def _output_tensors(result: Any) -> dict[str, tuple[str, np.ndarray]]:
    """Output name -> (datatype, array) by output kind; labels keep their registered type."""
    if result.kind in OutputKind.CLASSIFIERS:
        if labels_are_strings(result.labels):
            label = ("BYTES", np.asarray(result.labels, dtype=object))
        else:
            label = ("INT64", np.asarray(result.labels, dtype=np.int64))
        return {"probabilities": ("FP32", np.ascontiguousarray(result.probabilities, dtype=np.float32)), "label": label}
    tensors: dict[str, tuple[str, np.ndarray]] = {}
    for name, array in result.outputs.items():
        array = np.ascontiguousarray(array)
        if array.dtype.kind in "OSU":
            tensors[name] = ("BYTES", array.astype(object))
        else:
            tensors[name] = (V2_DATATYPES[array.dtype.name], array)
    return tensors


def _bytes_blob(array: np.ndarray) -> bytes:
    """The binary form of a BYTES tensor: each element as a 4-byte little-endian length and its bytes."""
    parts = []
    for item in array.reshape(-1).tolist():
        data = item if isinstance(item, bytes) else str(item).encode()
        parts.append(struct.pack("<I", len(data)) + data)
    return b"".join(parts)


def _infer_response(
    result: Any, requested: dict[str, bool], *, request_id: str, headers: dict[str, str]
) -> HttpResponse:
    tensors = _output_tensors(result)
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, binary in requested.items():
        datatype, array = tensors[name]
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blob = _bytes_blob(array) if datatype == "BYTES" else array.astype(array.dtype.newbyteorder("<")).tobytes()
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
