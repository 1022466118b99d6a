"""Input validation and prediction: every malformed batch is a 400 naming what is wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InvalidInput
from inference.errors import BatchTooLarge
from inference.services import instances_predict, instances_validate, model_predict
from tests.support import assert_problem

ROW = [0.0] * 64


def at(index: int, value: object) -> list:
    """A valid all-zero instance with ``value`` at ``index``."""
    row = list(ROW)
    row[index] = value
    return row


def _validate(served, instances, max_batch=8):
    return instances_validate(model=served, instances=instances, max_batch=max_batch)


@pytest.mark.parametrize(
    ("instances", "detail"),
    [
        ([ROW, ROW, ROW, [1.0] * 12], "instances[3] has 12 values; expected 64"),
        ([[1.0] * 63], "instances[0] has 63 values; expected 64"),
        ([ROW, [1.0] * 65], "instances[1] has 65 values; expected 64"),
        ([], "instances is empty; send at least one instance of 64 numbers"),
        ({"a": 1}, "instances must be a list of instances, each a list of 64 numbers; got dict"),
        ("1,2,3", "got str"),
        (None, "got NoneType"),
        ([ROW, 5], "instances[1] is int, not a list of 64 numbers"),
        ([ROW, {"x": 1}], "instances[1] is dict"),
        ([at(10, "7")], "instances[0][10] is '7' (str), not a number"),
        ([at(3, None)], "instances[0][3] is None (NoneType), not a number"),
        ([at(5, True)], "instances[0][5] is True (bool), not a number"),
        ([ROW, at(63, [1.0])], "instances[1][63] is [1.0] (list), not a number"),
        ([at(2, float("nan"))], "instances[0][2] is nan; values must be finite numbers"),
        ([ROW, at(7, float("inf"))], "instances[1][7] is inf; values must be finite numbers"),
        ([at(1, -float("inf"))], "instances[0][1] is -inf"),
        ([ROW, ROW, at(4, 17)], "instances[2][4] is 17, outside the model's value range [0, 16]"),
        ([at(4, -0.5)], "instances[0][4] is -0.5, outside the model's value range [0, 16]"),
        ([at(4, 10**400)], "instances[0][4] is too large"),
        ([at(4, 1e300)], "outside the model's value range"),
    ],
)
def test_invalid_instances_name_the_problem(served, instances, detail):
    with pytest.raises(InvalidInput) as caught:
        _validate(served, instances)
    assert caught.value.code == "invalid_input" and caught.value.status == 400
    assert detail in caught.value.detail


def test_error_members_name_instance_and_width(served):
    with pytest.raises(InvalidInput) as caught:
        _validate(served, [ROW, ROW, ROW, [1.0] * 12])
    assert caught.value.extra == {"instance": 3, "expected_width": 64}


def test_oversized_batch_is_a_400_with_its_own_code(served):
    with pytest.raises(BatchTooLarge) as caught:
        _validate(served, [ROW] * 9, max_batch=8)
    assert isinstance(caught.value, InvalidInput)
    assert (caught.value.status, caught.value.code) == (400, "batch_too_large")
    assert caught.value.detail == "Batch of 9 instances exceeds the maximum of 8 per request."
    assert caught.value.extra == {"max_batch": 8}
    assert _validate(served, [ROW] * 8, max_batch=8).shape == (8, 64)


def test_valid_batches_become_contiguous_float32(served):
    ints = [[i % 17 for i in range(64)], tuple(float(16 - i % 17) for i in range(64))]
    batch = _validate(served, ints)
    assert batch.dtype == np.float32 and batch.flags.c_contiguous and batch.shape == (2, 64)
    assert batch[0, 16] == 16.0 and batch[1, 0] == 16.0
    mixed = [[np.float32(1.5), np.int64(2), *ROW[2:]]]
    assert _validate(served, mixed)[0, :2].tolist() == [1.5, 2.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint8])
def test_numpy_arrays_are_accepted_for_batch_jobs(served, dtype):
    array = np.full((5, 64), 3, dtype=dtype)
    batch = _validate(served, array)
    assert batch.dtype == np.float32 and batch.shape == (5, 64)


@pytest.mark.parametrize(
    ("array", "detail"),
    [
        (np.zeros((2, 10), np.float32), "instances[0] has 10 values; expected 64"),
        (np.zeros(64, np.float32), "2-D array of shape [batch, 64]; got shape [64]"),
        (np.zeros((0, 64), np.float32), "instances is empty"),
        (np.zeros((2, 64), bool), "got an array of bool"),
        (np.full((2, 64), 20.0), "instances[0][0] is 20, outside"),
        (np.vstack([np.zeros(64), np.full(64, np.nan)]), "instances[1][0] is nan"),
    ],
)
def test_invalid_numpy_arrays(served, array, detail):
    with pytest.raises(InvalidInput) as caught:
        _validate(served, array)
    assert detail in caught.value.detail


def test_numpy_batch_too_large(served):
    with pytest.raises(BatchTooLarge):
        _validate(served, np.zeros((9, 64), np.float32), max_batch=8)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=3),
    lambda children: st.lists(children, max_size=70) | st.dictionaries(st.text(max_size=2), children, max_size=2),
    max_leaves=200,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(instances=json_values)
def test_arbitrary_json_is_validated_or_refused_never_crashes(served, instances):
    try:
        batch = _validate(served, instances, max_batch=1024)
    except InvalidInput:
        return
    assert batch.shape[1] == 64 and np.isfinite(batch).all()


def test_runtime_failure_is_a_503_not_a_500(served):
    from inference.errors import ModelUnavailable

    with pytest.raises(ModelUnavailable, match="failed to run this batch"):
        model_predict(model=served, batch=np.zeros((1, 3), np.float32))


@pytest.mark.django_db
def test_runtime_api_predicts_with_the_recorded_accuracy(register, trained):
    register(activate=True)
    x, y = trained.dataset.x_test, trained.dataset.y_test
    prediction = instances_predict(name="digits", instances=x.tolist(), max_batch=len(x))
    assert np.mean(np.asarray(prediction.labels) == y) == pytest.approx(trained.metrics["accuracy"], abs=1e-6)


@pytest.mark.django_db
@pytest.mark.embedded
@pytest.mark.urls("tests.inference.urls_predict")
@pytest.mark.parametrize(
    ("instances", "status", "code", "detail"),
    [
        ([ROW, [1] * 12], 400, "invalid_input", "instances[1] has 12 values; expected 64"),
        ([at(1, "x")], 400, "invalid_input", "not a number"),
        ([at(1, 99)], 400, "invalid_input", "outside the model's value range [0, 16]"),
        ([], 400, "invalid_input", "instances is empty"),
        ([ROW] * 9, 400, "batch_too_large", "exceeds the maximum of 8"),
        ("not a list", 400, "invalid_input", "must be a list of instances"),
    ],
)
def test_invalid_input_over_http_is_a_problem_document(client, register, instances, status, code, detail):
    register(activate=True)
    response = client.post(
        "/t/predict/digits", data=json.dumps({"instances": instances}), content_type="application/json"
    )
    body = assert_problem(response, status, code)
    assert detail in body["detail"]


@pytest.mark.django_db
@pytest.mark.embedded
@pytest.mark.urls("tests.inference.urls_predict")
def test_unknown_and_broken_models_over_http(client, register):
    payload = json.dumps({"instances": [ROW]})
    assert_problem(
        client.post("/t/predict/ghost", data=payload, content_type="application/json"), 404, "model_not_found"
    )
    version = register(activate=True)
    version.absolute_path().write_bytes(b"broken")
    response = client.post("/t/predict/digits", data=payload, content_type="application/json")
    body = assert_problem(response, 503, "model_unavailable")
    assert "digits@1" in body["detail"] and response["Retry-After"] == "1"
