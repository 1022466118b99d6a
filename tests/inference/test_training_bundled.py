"""The bundled regression and image models: TensorFlow training, tf2onnx export, parity and quality gates."""

from __future__ import annotations

from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from inference.models import ModelVersion
from inference.store import onnx_signature

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_diabetes_regression_beats_the_mean_and_answers_in_the_datas_units(bundled):
    result = bundled["diabetes"]
    m = result.metrics
    assert m["r2"] >= 0.3 and m["mae"] < m["baseline_mae"]
    assert m["parity"]["max_abs_diff"] <= m["parity"]["tolerance"]
    sig = onnx_signature(result.onnx_bytes).signature
    assert sig["inputs"] == [{"name": "features", "dtype": "float32", "shape": ["batch", 10]}]
    assert sig["outputs"] == [{"name": "value", "dtype": "float32", "shape": ["batch", 1]}]
    assert result.registration["plausible_min"] < result.registration["plausible_max"]
    assert "Plausible range" in result.model_card and "R²" in result.model_card


def test_digit_images_take_uint8_pixels_with_scaling_in_the_graph(bundled):
    import onnxruntime as ort
    from sklearn.datasets import load_digits

    result = bundled["digit-images"]
    assert result.metrics["accuracy"] >= 0.95 and result.metrics["parity"]["argmax_agreement"] == 1.0
    sig = onnx_signature(result.onnx_bytes).signature
    assert sig["inputs"] == [{"name": "image", "dtype": "uint8", "shape": ["batch", 8, 8, 1]}]
    images = load_digits().images[:20].astype(np.uint8)[..., None]
    session = ort.InferenceSession(result.onnx_bytes, providers=["CPUExecutionProvider"])
    predicted = session.run(["probabilities"], {"image": images})[0].argmax(axis=1)
    assert (predicted == load_digits().target[:20]).mean() >= 0.9


def _served(result, input_name: str, output: str):
    """The exported file as a ``model(x, training=False)`` callable: what the gate compares TensorFlow with.

    The fixture's results come from the on-disk cache without their Keras
    models; the gate's comparison logic is what is tested here (the real
    TensorFlow-against-ONNX figures are asserted in the tests above).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(result.onnx_bytes, providers=["CPUExecutionProvider"])
    return lambda batch, training=False: session.run([output], {input_name: batch})[0]


def test_parity_gate_refuses_a_diverging_export(bundled):
    from inference.training.bundled import parity_gate
    from inference.training.errors import ParityError

    images, regression = bundled["digit-images"], bundled["diabetes"]
    image_model = _served(images, "image", "probabilities")
    x = np.zeros((4, 8, 8, 1), np.uint8)
    assert parity_gate(image_model, images.onnx_bytes, x, input_name="image", output="probabilities", classifier=True)

    def drifted(batch, training=False):  # a model the file no longer matches
        return np.asarray(image_model(batch, training=training)) * 0.9

    with pytest.raises(ParityError, match="parity gate"):
        parity_gate(drifted, images.onnx_bytes, x, input_name="image", output="probabilities", classifier=True)

    value_model = _served(regression, "features", "value")

    def shifted(batch, training=False):
        return np.asarray(value_model(batch, training=training)) + 1.0

    features = np.zeros((3, 10), np.float32)
    assert parity_gate(
        value_model, regression.onnx_bytes, features, input_name="features", output="value", classifier=False
    )
    with pytest.raises(ParityError, match="parity gate"):
        parity_gate(shifted, regression.onnx_bytes, features, input_name="features", output="value", classifier=False)

    def reshaped(batch, training=False):
        return np.asarray(image_model(batch, training=training))[:, :5]

    with pytest.raises(ParityError, match="shape"):
        parity_gate(reshaped, images.onnx_bytes, x, input_name="image", output="probabilities", classifier=True)


def test_ensure_bundled_models_trains_gates_activates_then_is_idempotent(monkeypatch, bundled, model_store):
    from inference.training import bundled as trainers

    calls = []
    fake = {
        name: (lambda name=name: calls.append(name) or bundled[name], gate, text)
        for name, (_, gate, text) in trainers.TRAINERS.items()
    }
    monkeypatch.setattr(trainers, "TRAINERS", fake)
    out = StringIO()
    call_command("ensure_bundled_models", stdout=out)
    assert sorted(calls) == ["diabetes", "digit-images"]
    diabetes = ModelVersion.objects.get(name="diabetes", status="active")
    assert diabetes.output_kind == "regression" and diabetes.plausible_min is not None
    assert diabetes.lineage["export"] == "tf2onnx.convert.from_function" and "mae" in diabetes.metrics
    images = ModelVersion.objects.get(name="digit-images", status="active")
    assert images.labels == list(range(10)) and images.signature["inputs"][0]["dtype"] == "uint8"
    call_command("ensure_bundled_models", stdout=out)
    assert len(calls) == 2 and "diabetes is active" in out.getvalue()
    # A model that misses its quality gate stays staged.
    monkeypatch.setattr(trainers, "TRAINERS", {"diabetes": (lambda: bundled["diabetes"], lambda m: False, "never")})
    ModelVersion.objects.filter(name="diabetes").update(status="retired")
    with pytest.raises(CommandError, match="misses its quality gate"):
        call_command("ensure_bundled_models", stdout=out)
    assert ModelVersion.objects.filter(name="diabetes", status="staged").count() == 1
