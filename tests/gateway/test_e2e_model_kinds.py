"""Every bundled model kind against real gunicorn workers: tritonclient with native datatypes, and the Python client.

``digits`` (FP32 [batch, 64] classifier), ``diabetes`` (FP32 [batch, 10]
regression) and ``digit-images`` (UINT8 [batch, 8, 8, 1] classifier), the
three models ``make setup`` registers, are called through the standard
Triton HTTP client with JSON and binary tensors; the Python client calls
each kind (and a several-input model) through REST v1; and the bad-input
matrix (wrong dtype, rank, dimension, missing, extra input) runs against
every one of them on both protocols.
"""

from __future__ import annotations

import numpy as np
import pytest
import requests

from audit.models import AuditEvent
from gateway.client import InvalidRequestError, MaaSClient
from inference.services import model_version_activate, model_version_register
from tests import onnx_models
from tests.gateway.test_model_kinds import bad_input_matrix
from tests.support import gateway_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded, pytest.mark.e2e]


@pytest.fixture
def server(env, digits, bundled):
    for result in bundled.values():
        version = model_version_register(
            name=result.name, data=result.onnx_bytes, actor="test", model_card=result.model_card, **result.registration
        )
        model_version_activate(version=version, actor="test")
    multi = model_version_register(
        name="multi", data=onnx_models.multi_input(), actor="test", value_min=-100, value_max=100
    )
    model_version_activate(version=multi, actor="test")
    # These tests are about signatures, not quotas: on a loaded host a quota round trip can exceed the
    # Redis client's 0.5 s timeout, and the fail-closed 503 would hide what is checked here.  Quota
    # admission, fail-closed included, is tested in tests/tenants/test_quota_redis_down.py.
    with gateway_server(workers=1, QUOTA_FAIL_OPEN="true", **env) as base:
        yield base


@pytest.fixture
def digits_data():
    from sklearn.datasets import load_digits

    return load_digits()


def test_tritonclient_calls_each_bundled_model_with_native_datatypes(server, make_caller, digits_data):
    import tritonclient.http as httpclient
    from sklearn.datasets import load_diabetes
    from tritonclient.utils import InferenceServerException

    caller = make_caller()
    client = httpclient.InferenceServerClient(url=server.removeprefix("http://"))
    # caller.http_headers is a fresh dict per call: tritonclient adds Inference-Header-Content-Length
    # to the dict it is given, which would leak into the next request.
    params = {"purpose": "research"}
    images = digits_data.images[:3].astype(np.uint8)[..., None]
    rows = digits_data.data[:3].astype(np.float32)
    features = load_diabetes().data[:4].astype(np.float32)

    names = ("digits", "diabetes", "digit-images")
    meta = {name: client.get_model_metadata(name, headers=caller.http_headers) for name in names}
    assert meta["digit-images"]["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 8, 8, 1]}]
    assert meta["diabetes"]["outputs"] == [{"name": "value", "datatype": "FP32", "shape": [-1, 1]}]
    assert meta["digits"]["inputs"][0]["datatype"] == "FP32"

    for binary in (True, False):
        image = httpclient.InferInput("image", list(images.shape), "UINT8")
        image.set_data_from_numpy(images, binary_data=binary)
        outputs = [
            httpclient.InferRequestedOutput("probabilities", binary_data=binary),
            httpclient.InferRequestedOutput("label", binary_data=binary),
        ]
        result = client.infer("digit-images", [image], outputs=outputs, headers=caller.http_headers, parameters=params)
        assert result.as_numpy("probabilities").shape == (3, 10)
        assert result.as_numpy("label").tolist() == [0, 1, 2]

        pixels = httpclient.InferInput("pixels", [3, 64], "FP32")
        pixels.set_data_from_numpy(rows, binary_data=binary)
        result = client.infer("digits", [pixels], headers=caller.http_headers, parameters=params)
        assert result.as_numpy("probabilities").shape == (3, 10) and result.as_numpy("label").tolist() == [0, 1, 2]

        tensor = httpclient.InferInput("features", list(features.shape), "FP32")
        tensor.set_data_from_numpy(features, binary_data=binary)
        value = httpclient.InferRequestedOutput("value", binary_data=binary)
        result = client.infer("diabetes", [tensor], outputs=[value], headers=caller.http_headers, parameters=params)
        values = result.as_numpy("value")
        assert values.shape == (4, 1) and values.dtype == np.float32
        assert np.all((values > 0) & (values < 400))
        assert len(result.get_response()["parameters"]["needs_review"]) == 4

    # A datatype the signature does not declare is refused by the gateway, not converted.
    wrong = httpclient.InferInput("image", list(images.shape), "FP32")
    wrong.set_data_from_numpy(images.astype(np.float32))
    with pytest.raises(InferenceServerException, match="UINT8"):
        client.infer("digit-images", [wrong], headers=caller.http_headers, parameters=params)
    client.close()
    assert AuditEvent.objects.filter(model_name="digit-images", http_status=200, units=3).count() == 2


def test_python_client_calls_each_model_kind(server, make_caller, digits_data):
    from sklearn.datasets import load_diabetes

    caller = make_caller()
    client = MaaSClient(server, caller.key)
    kinds = {m["name"]: m["output_kind"] for m in client.list_models()}
    assert kinds == {
        "digits": "probabilities",
        "digit-images": "probabilities",
        "diabetes": "regression",
        "multi": "tensor",
    }
    images = digits_data.images[:2].astype(np.uint8)[..., None]
    labels = [p["label"] for p in client.predict("digit-images", images, purpose="research")["predictions"]]
    assert labels == [0, 1]
    values = client.predict("diabetes", load_diabetes().data[:2], purpose="research")["predictions"]
    assert all(len(p["value"]) == 1 and isinstance(p["needs_review"], bool) for p in values)
    answer = client.predict(
        "multi",
        {"a": np.array([[0.5, 1.5]], np.float32), "b": np.array([[2, -3]]), "mask": np.array([[True, False]])},
        purpose="research",
    )
    assert answer["predictions"][0]["outputs"] == {"sum": [2.5, -1.5], "kept": [2, 0]}
    with pytest.raises(InvalidRequestError) as caught:
        client.predict("digit-images", images.astype(np.float32) + 0.5, purpose="research")
    assert caught.value.status == 400 and caught.value.code == "invalid_input"


def test_bad_input_matrix_runs_against_every_model_on_real_workers(server, make_caller):
    caller = make_caller()

    def post_json(path, body):
        return requests.post(f"{server}{path}", json=body, headers=caller.http_headers, timeout=30)

    assert bad_input_matrix(post_json) == ["diabetes", "digit-images", "digits", "multi"]
