"""The Open Inference Protocol (v2) surface, in-process; tritonclient runs in test_e2e."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audit.models import AuditEvent

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

INFER = "/v2/models/digits/infer"


def infer_body(rows, **extra):
    array = np.asarray(rows, dtype=np.float32)
    return {
        "inputs": [
            {"name": "pixels", "shape": list(array.shape), "datatype": "FP32", "data": array.reshape(-1).tolist()}
        ],
        **extra,
    }


def post(client, path, body, caller, **headers):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", **caller.headers, **headers)


def assert_v2_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert body["code"] == code
    assert "Traceback" not in response.content.decode()
    return body


def test_server_health_and_metadata_are_public(client, digits, settings):
    settings.DEFAULT_MODEL_NAME = "digits"  # the readiness check loads the default model: the fixture's
    assert client.get("/v2/health/live").json() == {"live": True}
    # Every dependency is there in both test setups (Redis or the file cache and filesystem broker).
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200, client.get("/readyz").content
    assert ready.json() == {"ready": True}
    meta = client.get("/v2").json()
    assert meta["name"] and meta["version"] and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_ready(client, digits, make_caller):
    caller = make_caller()
    meta = client.get("/v2/models/digits", **caller.headers).json()
    assert meta["name"] == "digits" and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}]
    assert client.get(f"/v2/models/digits/versions/{digits.version}/ready", **caller.headers).json()["ready"] is True
    assert_v2_error(client.get("/v2/models/digits/versions/9/ready", **caller.headers), 404, "model_version_not_found")


def test_infer_flat_and_nested_data(client, digits, make_caller, digit_rows):
    caller = make_caller()
    flat = post(client, INFER, infer_body(digit_rows[:2], id="req-1", parameters={"purpose": "research"}), caller)
    assert flat.status_code == 200, flat.content
    body = flat.json()
    assert body["model_name"] == "digits" and body["model_version"] == str(digits.version) and body["id"] == "req-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["probabilities"]["shape"] == [2, 10] and len(outputs["probabilities"]["data"]) == 20
    assert outputs["label"]["data"] == [0, 1]
    # The decision facts ride in headers here (the protocol's body has no place for them).
    recorded = AuditEvent.objects.get(request_id=flat["X-Request-ID"])
    assert flat["X-Policy-Versions"] == recorded.policy_versions and "data_minimisation" in flat["X-Obligations"]
    nested = infer_body(digit_rows[:2])
    nested["inputs"][0]["data"] = digit_rows[:2].tolist()
    assert post(client, INFER, nested, caller).json()["outputs"][1]["data"] == [0, 1]
    assert AuditEvent.objects.filter(path=INFER, http_status=200).count() == 2


def test_requested_outputs_and_binary_output(client, digits, make_caller, digit_rows):
    caller = make_caller()
    body = infer_body(digit_rows[:3], outputs=[{"name": "probabilities", "parameters": {"binary_data": True}}])
    response = post(client, INFER, body, caller)
    assert response.status_code == 200
    header_len = int(response["Inference-Header-Content-Length"])
    head = json.loads(response.content[:header_len])
    (output,) = head["outputs"]
    probabilities = np.frombuffer(response.content[header_len:], dtype="<f4").reshape(output["shape"])
    assert probabilities.shape == (3, 10) and list(probabilities.argmax(axis=1)) == [0, 1, 2]


def test_binary_input(client, digits, make_caller, digit_rows):
    caller = make_caller()
    array = digit_rows[:2].astype("<f4")
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "pixels",
                    "shape": [2, 64],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": array.nbytes},
                }
            ]
        }
    ).encode()
    response = client.post(
        INFER,
        data=head + array.tobytes(),
        content_type="application/octet-stream",
        HTTP_INFERENCE_HEADER_CONTENT_LENGTH=str(len(head)),
        **caller.headers,
    )
    assert response.status_code == 200, response.content
    assert {o["name"]: o for o in response.json()["outputs"]}["label"]["data"] == [0, 1]


@pytest.mark.parametrize(
    ("case", "mutate", "status", "code"),
    [
        ("malformed json", lambda b: "{nope", 400, "malformed_request"),
        # json.loads raises RecursionError (not ValueError) for this: it was a 500.
        ("deeply nested", lambda b: "[" * 100000, 400, "malformed_request"),
        ("no inputs", lambda b: {"inputs": []}, 400, "invalid_input"),
        ("wrong input name", lambda b: {**b, "inputs": [{**b["inputs"][0], "name": "x"}]}, 400, "invalid_input"),
        ("wrong width", lambda b: {**b, "inputs": [{**b["inputs"][0], "shape": [2, 32]}]}, 400, "invalid_input"),
        ("bad datatype", lambda b: {**b, "inputs": [{**b["inputs"][0], "datatype": "BYTES"}]}, 400, "invalid_input"),
        ("data size mismatch", lambda b: {**b, "inputs": [{**b["inputs"][0], "shape": [3, 64]}]}, 400, "invalid_input"),
        ("strings in data", lambda b: {**b, "inputs": [{**b["inputs"][0], "data": ["a"] * 128}]}, 400, "invalid_input"),
        ("unknown output", lambda b: {**b, "outputs": [{"name": "logits"}]}, 400, "invalid_input"),
    ],
)
def test_bad_v2_requests_use_the_protocol_error_shape(
    client, digits, make_caller, digit_rows, case, mutate, status, code
):
    caller = make_caller()
    assert_v2_error(post(client, INFER, mutate(infer_body(digit_rows[:2])), caller), status, code)


def test_v2_refuses_an_over_limit_declared_length_before_reading_the_body(client, digits, make_caller, digit_rows):
    caller = make_caller(max_body_bytes=4096)
    body = json.dumps(infer_body(digit_rows[:1]))
    assert len(body) < 4096
    assert post(client, INFER, body, caller).status_code == 200
    assert_v2_error(post(client, INFER, body, caller, CONTENT_LENGTH="8192"), 413, "payload_too_large")
    assert_v2_error(post(client, INFER, body, caller, CONTENT_LENGTH="²"), 400, "malformed_request")
    refused = AuditEvent.objects.filter(path=INFER, http_status=413).get()
    assert refused.units == 0 and refused.error_code == "payload_too_large"


def test_v2_auth_and_unknown_model_errors(client, digits, make_caller, digit_rows):
    response = client.post(INFER, data=json.dumps(infer_body(digit_rows[:1])), content_type="application/json")
    assert_v2_error(response, 401, "missing_api_key")
    caller = make_caller()
    assert_v2_error(post(client, "/v2/models/nope/infer", infer_body(digit_rows[:1]), caller), 404, "model_not_found")
    assert_v2_error(client.get(INFER, **caller.headers), 405, "method_not_allowed")
