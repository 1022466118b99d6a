"""Models beyond the one-input classifier, on every path: REST v1, the Open Inference Protocol and jobs.

The graphs are built with ``onnx.helper`` (tests/onnx_models.py) so each test
registers its models in milliseconds; what they compute is known in numpy.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from audit.models import AuditEvent
from inference.services import model_version_activate, model_version_register
from jobs.models import BatchJob
from policy.models import ReviewItem
from tests import onnx_models
from tests.support import assert_problem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

IRIS = np.array([[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.9, 3.1, 5.4, 2.1]], dtype=np.float32)
INT_LABELS = [10, 20, 30]


def register(name: str, data: bytes, **fields) -> object:
    version = model_version_register(name=name, data=data, actor="test", **fields)
    return model_version_activate(version=version, actor="test")


@pytest.fixture
def kinds(model_store, settings, tmp_path):
    """One active model of every kind, with string and integer labels."""
    settings.JOBS_DIR = str(tmp_path / "jobs")
    return {
        "iris": register("iris", onnx_models.classifier(), labels=onnx_models.IRIS_LABELS, value_max=10.0),
        "iris-int": register(
            "iris-int", onnx_models.classifier(logits=True), labels=INT_LABELS, value_max=10.0, output_kind="logits"
        ),
        "price": register(
            "price", onnx_models.regression(), value_min=-10, value_max=10, plausible_min=50, plausible_max=150
        ),
        "multi": register("multi", onnx_models.multi_input(), value_min=-100, value_max=100),
        "tiles": register("tiles", onnx_models.image_classifier(), value_max=16, labels=["left", "right"]),
    }


def post(client, path, body, caller, **headers):
    return client.post(path, data=json.dumps(body), content_type="application/json", **caller.headers, **headers)


def v1(client, caller, name, instances):
    return post(client, f"/v1/models/{name}/predict", {"instances": instances, "purpose": "research"}, caller)


def v2(client, caller, name, inputs, **extra):
    return post(client, f"/v2/models/{name}/infer", {"inputs": inputs, **extra}, caller)


def tensor(name, array, datatype):
    array = np.asarray(array)
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": array.reshape(-1).tolist()}


def assert_v2_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert isinstance(body["error"], str) and body["error"] and body["code"] == code
    return body


# --- 1. labels keep their registered type on every path ------------------------------------------------
@pytest.mark.parametrize(("name", "labels"), [("iris", onnx_models.IRIS_LABELS), ("iris-int", INT_LABELS)])
def test_labels_keep_their_type_in_v1_and_v2(client, kinds, make_caller, name, labels):
    caller = make_caller()
    expected = [labels[i] for i in onnx_models.classifier_expected(IRIS).argmax(axis=1)]
    assert len(set(expected)) == 3  # the three rows are three different classes
    response = v1(client, caller, name, IRIS.tolist())
    assert response.status_code == 200, response.content
    predictions = response.json()["predictions"]
    assert [p["label"] for p in predictions] == expected
    np.testing.assert_allclose(
        [p["probabilities"] for p in predictions], onnx_models.classifier_expected(IRIS), atol=1e-5
    )
    answer = v2(client, caller, name, [tensor("features", IRIS, "FP32")])
    assert answer.status_code == 200, answer.content
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    datatype = "BYTES" if isinstance(labels[0], str) else "INT64"
    assert outputs["label"] == {"name": "label", "datatype": datatype, "shape": [3], "data": expected}
    meta = client.get(f"/v2/models/{name}", **caller.headers).json()
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {"probabilities": "FP32", "label": datatype}
    assert client.get(f"/v1/models/{name}", **caller.headers).json()["labels"] == labels


def test_string_labels_in_v2_binary_output_use_the_bytes_encoding(client, kinds, make_caller):
    caller = make_caller()
    body = {
        "inputs": [tensor("features", IRIS, "FP32")],
        "outputs": [{"name": "label", "parameters": {"binary_data": True}}],
    }
    response = post(client, "/v2/models/iris/infer", body, caller)
    assert response.status_code == 200, response.content
    size = int(response["Inference-Header-Content-Length"])
    (output,) = json.loads(response.content[:size])["outputs"]
    assert output["datatype"] == "BYTES" and output["shape"] == [3]
    blob, labels = response.content[size:], []
    while blob:
        (length,) = struct.unpack("<I", blob[:4])
        labels.append(blob[4 : 4 + length].decode())
        blob = blob[4 + length :]
    assert labels == ["setosa", "versicolor", "virginica"]
    assert len(response.content) - size == output["parameters"]["binary_data_size"]


@pytest.mark.parametrize(("name", "labels"), [("iris", onnx_models.IRIS_LABELS), ("iris-int", INT_LABELS)])
def test_labels_keep_their_type_in_jobs(
    client, kinds, make_caller, celery_eager, django_capture_on_commit_callbacks, name, labels
):
    caller = make_caller()
    body = {"model": name, "instances": IRIS.tolist(), "purpose": "research"}
    with django_capture_on_commit_callbacks(execute=True):
        accepted = post(client, "/v1/jobs", body, caller)
    assert accepted.status_code == 202, accepted.content
    job = client.get(f"/v1/jobs/{accepted.json()['id']}", **caller.headers).json()
    assert job["status"] == "succeeded", job
    expected = [labels[i] for i in onnx_models.classifier_expected(IRIS).argmax(axis=1)]
    assert [r["label"] for r in job["results"]] == expected
    lines = b"".join(client.get(job["results_url"], **caller.headers).streaming_content).splitlines()
    assert [json.loads(line)["label"] for line in lines] == expected
    chunk = AuditEvent.objects.get(action="job.chunk", detail__job_id=job["id"])
    assert chunk.prediction["labels"] == {str(label): 1 for label in expected}


# --- 2. signatures: several typed inputs, raw outputs, images ----------------------------------------------
def test_multi_input_model_on_v1_v2_and_jobs(
    client, kinds, make_caller, celery_eager, django_capture_on_commit_callbacks
):
    caller = make_caller()
    instances = [
        {"a": [0.5, 1.5], "b": [2, -3], "mask": [True, False]},
        {"a": [-1.0, 0.0], "b": [7, 1], "mask": [False, True]},
    ]
    response = v1(client, caller, "multi", instances)
    assert response.status_code == 200, response.content
    assert [p["outputs"] for p in response.json()["predictions"]] == [
        {"sum": [2.5, -1.5], "kept": [2, 0]},
        {"sum": [6.0, 1.0], "kept": [0, 1]},
    ]
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert event.units == 2 and [len(p["outputs_sha256"]) for p in event.prediction] == [16, 16]
    # The input digest covers every input: changing only the boolean mask changes it.
    flipped = [dict(instances[0], mask=[True, True]), instances[1]]
    other = v1(client, caller, "multi", flipped)
    assert other.status_code == 200
    assert AuditEvent.objects.get(request_id=other["X-Request-ID"]).input_digest != event.input_digest
    answer = v2(
        client,
        caller,
        "multi",
        [
            tensor("a", [[0.5, 1.5], [-1.0, 0.0]], "FP32"),
            tensor("b", [[2, -3], [7, 1]], "INT64"),
            tensor("mask", [[True, False], [False, True]], "BOOL"),
        ],
    )
    assert answer.status_code == 200, answer.content
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["sum"] == {"name": "sum", "datatype": "FP32", "shape": [2, 2], "data": [2.5, -1.5, 6.0, 1.0]}
    assert outputs["kept"] == {"name": "kept", "datatype": "INT32", "shape": [2, 2], "data": [2, 0, 0, 1]}
    # Every input gets the same digest on both protocols.
    assert AuditEvent.objects.get(request_id=answer["X-Request-ID"]).input_digest == event.input_digest
    with django_capture_on_commit_callbacks(execute=True):
        accepted = post(client, "/v1/jobs", {"model": "multi", "instances": instances, "purpose": "research"}, caller)
    assert accepted.status_code == 202, accepted.content
    job = client.get(f"/v1/jobs/{accepted.json()['id']}", **caller.headers).json()
    assert job["status"] == "succeeded", job
    assert [r["outputs"] for r in job["results"]] == [p["outputs"] for p in response.json()["predictions"]]


def test_uint8_image_model_takes_integers_in_its_shape(client, kinds, make_caller):
    caller = make_caller()
    left = [[[16], [0]], [[16], [0]]]
    right = [[[0], [9]], [[0], [9]]]
    response = v1(client, caller, "tiles", [left, right])
    assert response.status_code == 200, response.content
    assert [p["label"] for p in response.json()["predictions"]] == ["left", "right"]
    answer = v2(client, caller, "tiles", [tensor("image", [left, right], "UINT8")])
    assert answer.status_code == 200, answer.content
    assert {o["name"]: o for o in answer.json()["outputs"]}["label"]["data"] == ["left", "right"]
    meta = client.get("/v2/models/tiles", **caller.headers).json()
    assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 2, 2, 1]}]


# --- 3. governance per kind -------------------------------------------------------------------------
def test_regression_values_out_of_the_plausible_range_need_review(client, kinds, make_caller):
    caller = make_caller()
    rows = np.array([[1.0, 1.0, 1.0], [9.0, -9.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    expected = onnx_models.regression_expected(rows)  # 107, 235 (outside [50, 150]), 100
    response = v1(client, caller, "price", rows.tolist())
    assert response.status_code == 200, response.content
    predictions = response.json()["predictions"]
    np.testing.assert_allclose([p["value"] for p in predictions], expected, rtol=1e-6)
    assert [p["needs_review"] for p in predictions] == [False, True, False]
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert event.needs_review is True and event.units == 3
    assert [p["needs_review"] for p in event.prediction] == [False, True, False]
    assert event.prediction[1]["value"] == pytest.approx([235.0])
    (item,) = ReviewItem.objects.filter(request_id=response["X-Request-ID"])
    assert item.label == "235 outside [50, 150]"
    answer = v2(client, caller, "price", [tensor("features", rows, "FP32")])
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["parameters"]["needs_review"] == [False, True, False]
    (output,) = body["outputs"]
    assert output["name"] == "value" and output["datatype"] == "FP32" and output["shape"] == [3, 1]
    assert ReviewItem.objects.filter(request_id=answer["X-Request-ID"]).count() == 1
    meta = client.get("/v1/models/price", **caller.headers).json()
    assert meta["output_kind"] == "regression" and meta["labels"] == []
    assert meta["plausible_range"] == [50.0, 150.0]
    assert client.get("/v1/models/iris", **caller.headers).json()["plausible_range"] is None


def test_job_of_a_regression_model_flags_and_summarises_values(
    client, kinds, make_caller, celery_eager, django_capture_on_commit_callbacks
):
    caller = make_caller()
    rows = [[1.0, 1.0, 1.0], [9.0, -9.0, 0.0]]
    with django_capture_on_commit_callbacks(execute=True):
        accepted = post(client, "/v1/jobs", {"model": "price", "instances": rows, "purpose": "research"}, caller)
    assert accepted.status_code == 202, accepted.content
    job = BatchJob.objects.get(id=accepted.json()["id"])
    assert job.status == "succeeded" and job.needs_review == 1
    results = client.get(f"/v1/jobs/{job.id}", **caller.headers).json()["results"]
    assert [r["value"] for r in results] == [pytest.approx([107.0]), pytest.approx([235.0])]
    chunk = AuditEvent.objects.get(action="job.chunk", detail__job_id=str(job.id))
    assert chunk.prediction["count"] == 2 and chunk.prediction["max"] == pytest.approx(235.0)


# --- 4. bad input per signature, on every registered model --------------------------------------------
def _good_instance(model) -> dict:
    values = {"bool": True, "float32": 1.0, "float64": 1.0}
    out = {}
    for spec in model.inputs:
        fill = values.get(spec.dtype, 1)
        out[spec.name] = np.full(spec.instance_shape, fill).tolist()
    return out


def _bad_v1_cases(model) -> list[tuple[str, list]]:
    good = _good_instance(model)
    first = model.inputs[0]
    wrong_type = "x" if first.dtype != "bool" else 1
    cases = [
        ("wrong dtype", [{**good, first.name: np.full(first.instance_shape, wrong_type).tolist()}]),
        ("wrong rank", [{**good, first.name: [good[first.name]]}]),
        ("wrong dimension", [{**good, first.name: np.zeros((first.instance_shape[0] + 1,)).tolist()}]),
        ("missing input", [{k: v for k, v in good.items() if k != first.name}]),
        ("extra input", [{**good, "surplus": [1]}]),
        ("not an object", [good, 5] if len(model.inputs) > 1 else [good, {"x": 1}]),
    ]
    if first.dtype.startswith(("int", "uint")):
        cases.append(("float for an integer", [{**good, first.name: np.full(first.instance_shape, 0.5).tolist()}]))
    return cases


def _v2_good(model) -> list[dict]:
    good = _good_instance(model)
    return [tensor(s.name, [good[s.name]], s.v2_datatype) for s in model.inputs]


def _bad_v2_cases(model) -> list[tuple[str, list]]:
    good = _v2_good(model)
    first = good[0]
    other = "FP64" if first["datatype"] != "FP64" else "FP32"
    return [
        ("wrong dtype", [{**first, "datatype": other}, *good[1:]]),
        ("wrong rank", [{**first, "shape": [*first["shape"], 1]}, *good[1:]]),
        ("wrong dimension", [{**first, "shape": [1, first["shape"][1] + 1, *first["shape"][2:]]}, *good[1:]]),
        ("missing input", good[1:] or [{**first, "name": "other"}]),
        ("extra input", [*good, {**first, "name": "surplus"}]),
        ("duplicate input", [*good, first]),
        ("strings in data", [{**first, "data": ["a"] * len(first["data"])}, *good[1:]]),
    ]


def bad_input_matrix(post_json) -> list[str]:
    """Every bad-input case of every active model, on both protocols; returns the names covered.

    ``post_json(path, body)`` sends one request with a tenant's key (the Django test client in-process,
    ``requests`` against real workers) and returns the response.
    """
    from inference.models import ModelVersion
    from inference.selectors import model_serving_get

    names = sorted(ModelVersion.objects.filter(status="active").values_list("name", flat=True))
    for name in names:
        model = model_serving_get(name=name)
        predict, infer = f"/v1/models/{name}/predict", f"/v2/models/{name}/infer"
        ok = post_json(predict, {"instances": [_good_instance(model)], "purpose": "research"})
        assert ok.status_code == 200, (name, ok.content)
        assert post_json(infer, {"inputs": _v2_good(model)}).status_code == 200, name
        for case, instances in _bad_v1_cases(model):
            response = post_json(predict, {"instances": instances, "purpose": "research"})
            assert response.status_code == 400, (name, case, response.content)
            assert_problem(response, 400, "invalid_input")
        for case, inputs in _bad_v2_cases(model):
            response = post_json(infer, {"inputs": inputs})
            assert response.status_code == 400, (name, case, response.content)
            assert_v2_error(response, 400, "invalid_input")
        refused = AuditEvent.objects.filter(model_name=name, http_status=400)
        assert refused.count() == len(_bad_v1_cases(model)) + len(_bad_v2_cases(model))
        assert set(refused.values_list("units", flat=True)) == {0}  # refused requests are refunded
    return names


def test_bad_input_matrix_runs_against_every_registered_model(client, kinds, make_caller, settings):
    # About validation, not quotas: a quota round trip slower than the Redis client's 0.5 s timeout on a
    # loaded host would be a fail-closed 503 (tested with the quotas), not a verdict on the input.
    settings.QUOTA_FAIL_OPEN = True
    caller = make_caller()

    def post_json(path, body):
        return post(client, path, body, caller)

    assert bad_input_matrix(post_json) == sorted(kinds)


# --- registration --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "fields", "message"),
    [
        (onnx_models.classifier, {"labels": ["a", 1, "c"]}, "all integers or all non-empty strings"),
        (onnx_models.classifier, {"labels": ["a", "a", "c"]}, "distinct"),
        (onnx_models.classifier, {"plausible_min": 0, "plausible_max": 1}, "regression models only"),
        (onnx_models.regression, {"labels": ["a"], "output_kind": "regression"}, "classifiers only"),
        (onnx_models.regression, {"plausible_min": 5, "plausible_max": 1}, "is empty"),
        (onnx_models.regression, {"plausible_min": 5}, "both ends"),
        (onnx_models.multi_input, {"output_kind": "logits", "labels": [1, 2, 3]}, "2 output classes but 3 labels"),
        (onnx_models.regression, {"output_kind": "nonsense"}, "Unknown output kind"),
    ],
)
def test_registration_refuses_inconsistent_kinds(model_store, data, fields, message):
    from core.errors import InvalidInput

    with pytest.raises(InvalidInput, match=message):
        model_version_register(name="x", data=data(), actor="test", value_max=10.0, **fields)


def test_registration_reads_kinds_from_the_output_shape(model_store):
    regression = model_version_register(name="r", data=onnx_models.regression(), actor="test", value_max=1.0)
    multi = model_version_register(name="m", data=onnx_models.multi_input(), actor="test", value_max=1.0)
    assert (regression.output_kind, multi.output_kind) == ("regression", "tensor")
    assert [i["dtype"] for i in multi.signature["inputs"]] == ["float32", "int64", "bool"]
    assert multi.signature["inputs"][2]["shape"] == ["batch", 2]


def test_plausible_range_is_changed_as_an_audited_governance_fact(client, kinds, make_caller):
    from core.errors import InvalidInput
    from core.invalidation import clock
    from inference.services import model_version_update

    caller = make_caller()
    assert v1(client, caller, "price", [[1.0, 1.0, 1.0]]).json()["predictions"][0]["needs_review"] is False  # 107
    model_version_update(version=kinds["price"], actor="staff:test", plausible_range=(0, 100))
    clock.reset()  # as every process does within about a second of the generation bump
    assert v1(client, caller, "price", [[1.0, 1.0, 1.0]]).json()["predictions"][0]["needs_review"] is True
    change = AuditEvent.objects.filter(action="model.update").latest("seq")
    assert change.detail["after"] == {"plausible_min": 0.0, "plausible_max": 100.0}
    with pytest.raises(InvalidInput, match="regression models only"):
        model_version_update(version=kinds["iris"], actor="staff:test", plausible_range=(0, 1))
    with pytest.raises(InvalidInput, match="is empty"):
        model_version_update(version=kinds["price"], actor="staff:test", plausible_range=(5, 5))
