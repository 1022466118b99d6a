"""Training, export and the parity gate (inference.training, no database)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from inference import training
from inference.services import instances_validate, model_predict
from inference.store import onnx_signature
from inference.training import export


@pytest.fixture(scope="session")
def trained(trained_keras):
    """These tests examine the training itself (the Keras model too): they train for real, not from the cache."""
    return trained_keras


@pytest.mark.slow
def test_default_training_reaches_required_accuracy(trained):
    metrics = trained.metrics
    assert metrics["accuracy"] >= 0.95
    assert metrics["epochs"] == 30 and metrics["batch_size"] == 32 and metrics["seed"] == 42
    assert metrics["n_test"] == 360 and metrics["n_train"] == 1437
    assert 0 < metrics["loss"] < 1
    assert set(metrics["per_class_recall"]) == {str(d) for d in range(10)}
    assert trained.labels == list(range(10))
    assert (trained.value_min, trained.value_max, trained.input_width) == (0.0, 16.0, 64)


def test_model_is_the_specified_mlp(trained):
    layers = trained.keras_model.layers
    assert [type(layer).__name__ for layer in layers] == ["Rescaling", "Dense", "Dense", "Dense"]
    assert [layer.units for layer in layers[1:]] == [128, 128, 10]
    assert [layer.activation.__name__ for layer in layers[1:]] == ["relu", "relu", "softmax"]
    assert type(trained.keras_model.optimizer).__name__ == "Adam"
    assert trained.keras_model.loss == "sparse_categorical_crossentropy"


def test_lineage_records_data_and_framework_versions(trained):
    lineage = trained.lineage
    assert len(lineage["data_fingerprint"]) == 64
    assert lineage["opset"] == 17
    assert {"tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy", "python"} <= set(lineage["frameworks"])
    assert lineage["frameworks"]["tf2onnx"].startswith("1.17")
    assert "stratified" in lineage["split"] and "random_state=42" in lineage["split"]


def test_export_has_readable_names_and_a_dynamic_batch(onnx_bytes, trained):
    sig = onnx_signature(onnx_bytes)
    assert sig.input_name == "pixels" and sig.output_name == "probabilities"
    assert sig.signature["inputs"] == [{"name": "pixels", "dtype": "float32", "shape": ["batch", 64]}]
    assert sig.signature["outputs"] == [{"name": "probabilities", "dtype": "float32", "shape": ["batch", 10]}]
    assert sig.signature["opset"]["ai.onnx"] == 17
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    for batch in (1, 7, 360):
        out = session.run(["probabilities"], {"pixels": trained.dataset.x_test[:batch]})[0]
        assert out.shape == (batch, 10)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_preprocessing_is_inside_the_graph(onnx_bytes, trained):
    # Raw pixel values (0..16) in, the recorded accuracy out: no client-side scaling.
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    x, y = trained.dataset.x_test, trained.dataset.y_test
    assert x.max() > 1.0
    accuracy = float((session.run(None, {"pixels": x})[0].argmax(axis=1) == y).mean())
    assert accuracy == pytest.approx(trained.metrics["accuracy"], abs=1e-6)


def test_parity_figures_are_recorded(trained):
    parity = trained.metrics["parity"]
    assert parity["instances"] == 360
    assert parity["max_abs_diff"] <= 1e-5
    assert parity["argmax_agreement"] == 1.0 and parity["argmax_mismatches"] == 0


def test_parity_gate_refuses_an_export_that_drifts(monkeypatch, trained):
    real = export._onnx_probabilities
    monkeypatch.setattr(export, "_onnx_probabilities", lambda data, x: real(data, x) + 1e-3)
    with pytest.raises(training.ParityError, match="parity gate") as caught:
        training.parity_check(trained.keras_model, trained.onnx_bytes, trained.dataset.x_test)
    assert caught.value.figures["max_abs_diff"] == pytest.approx(1e-3, rel=1e-2)


def test_parity_gate_refuses_a_different_predicted_class(monkeypatch, trained):
    real = export._onnx_probabilities

    def swapped(data, x):
        out = real(data, x)
        return out[:, ::-1].copy()

    monkeypatch.setattr(export, "_onnx_probabilities", swapped)
    with pytest.raises(training.ParityError) as caught:
        training.parity_check(trained.keras_model, trained.onnx_bytes, trained.dataset.x_test, tolerance=10.0)
    assert caught.value.figures["argmax_mismatches"] > 0
    assert "disagrees on" in str(caught.value)


def test_data_fingerprint_changes_with_any_value():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.array([0, 1, 2])
    first = training.data_fingerprint({"x": x, "y": y})
    assert first == training.data_fingerprint({"y": y.copy(), "x": x.copy()})
    x[2, 3] += 1
    assert training.data_fingerprint({"x": x, "y": y}) != first
    assert training.data_fingerprint({"x": x.astype(np.float64), "y": y}) != training.data_fingerprint({"x": x, "y": y})


def _mnist_like(path, *, n_train=120, n_test=40, seed=0):
    rng = np.random.default_rng(seed)
    y_train = np.arange(n_train) % 10
    y_test = np.arange(n_test) % 10
    x_train = rng.integers(0, 40, size=(n_train, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 40, size=(n_test, 28, 28), dtype=np.uint8)
    # Make the classes separable: a bright band whose row depends on the label.
    for x, y in ((x_train, y_train), (x_test, y_test)):
        for i, label in enumerate(y):
            x[i, 2 + 2 * label, :] = 255
    np.savez(path, x_train=x_train, y_train=y_train.astype(np.uint8), x_test=x_test, y_test=y_test.astype(np.uint8))
    return path


def test_keras_mnist_npz_is_flattened_and_scaled_from_255(tmp_path):
    dataset = training.load_dataset(str(_mnist_like(tmp_path / "mnist.npz")))
    assert dataset.width == 784
    assert (dataset.value_min, dataset.value_max) == (0.0, 255.0)
    assert dataset.labels == list(range(10))
    assert dataset.x_test.shape == (40, 784) and dataset.x_train.dtype == np.float32
    assert "own x_test" in dataset.split


def test_training_on_npz_exports_a_784_wide_model(tmp_path):
    path = _mnist_like(tmp_path / "mnist.npz")
    result = training.train_model(training.TrainingConfig(epochs=3, data_path=str(path)))
    sig = onnx_signature(result.onnx_bytes)
    assert sig.input_width == 784 and sig.n_classes == 10
    assert result.value_max == 255.0
    assert result.metrics["parity"]["max_abs_diff"] <= 1e-5
    assert result.lineage["dataset"].startswith("npz file mnist.npz")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_train": np.zeros((2, 4))}, "missing arrays"),
        (
            {"x_train": np.zeros((2, 4)), "y_train": np.zeros(3, int), "x_test": np.zeros((1, 4)), "y_test": [0]},
            "different lengths",
        ),
        (
            {"x_train": np.zeros((2, 4)), "y_train": [0.5, 1], "x_test": np.zeros((1, 4)), "y_test": [0.5]},
            "integers",
        ),
    ],
)
def test_bad_npz_files_are_refused_clearly(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(training.DatasetError, match=message):
        training.load_dataset(str(path))


def test_missing_data_file_is_a_dataset_error(tmp_path):
    with pytest.raises(training.DatasetError, match="no such file"):
        training.load_dataset(str(tmp_path / "absent.npz"))


def test_model_card_describes_purpose_data_and_metrics(trained):
    card = training.model_card_text(name="digits", result=trained, risk_tier="limited", region="eu")
    assert card.startswith("# Model card: digits")
    assert f"Accuracy {trained.metrics['accuracy']:.4f}" in card
    assert trained.lineage["data_fingerprint"] in card
    assert "Risk tier: limited" in card and "region: eu" in card


# --- the served ONNX file answers like the Keras model it was exported from (needs that model: trains) ---------


def test_prediction_labels_and_top_probabilities(served, trained):
    x = trained.dataset.x_test[:20]
    prediction = model_predict(model=served, batch=instances_validate(model=served, instances=x.tolist(), max_batch=20))
    expected = np.asarray(trained.keras_model(x, training=False))
    assert prediction.labels == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose(prediction.top_probabilities, expected.max(axis=1), atol=1e-5)
    assert prediction.probabilities.shape == (20, 10)
    assert (prediction.model_name, prediction.model_version) == ("digits", 1)


def test_prediction_maps_class_indices_to_labels(spec, trained):
    from inference.runtime import CPU_PROVIDER, ModelSpec, load_model

    letters = load_model(ModelSpec(**{**spec.__dict__, "labels": tuple("abcdefghij")}), providers=[CPU_PROVIDER])
    prediction = model_predict(model=letters, batch=trained.dataset.x_test[:3])
    expected = np.asarray(trained.keras_model(trained.dataset.x_test[:3], training=False)).argmax(axis=1)
    assert prediction.labels == ["abcdefghij"[i] for i in expected]
