"""Two more bundled models, trained with TensorFlow from scikit-learn's data and exported with tf2onnx.

* ``diabetes``: a tabular **regression** model (scikit-learn's diabetes data,
  ten standardised features, disease progression one year later).  The target
  is standardised for training and un-standardised inside the graph, so the
  ONNX file answers in the data's own units.  Its plausible range (the span of
  the targets seen in training) is recorded with the model: a prediction
  outside it needs human review.
* ``digit-images``: an **image** classifier taking ``uint8`` pixels shaped
  ``[batch, 8, 8, 1]`` (scikit-learn's digits as integer images, 0-16);
  casting and scaling live in the graph.

Both pass a parity gate (ONNX Runtime must reproduce TensorFlow on the whole
held-out set) and carry their error or accuracy figures into the registry.
Training takes seconds; like :mod:`inference.training`, TensorFlow is imported
lazily and only here.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference.store import (
    META_DATA_FINGERPRINT,
    META_LABELS,
    META_OUTPUT_KIND,
    META_PLAUSIBLE_MAX,
    META_PLAUSIBLE_MIN,
    META_VALUE_MAX,
    META_VALUE_MIN,
)
from inference.training.data import DEFAULT_SEED, DEFAULT_TEST_SIZE, data_fingerprint, load_dataset
from inference.training.errors import ParityError, TrainingError
from inference.training.export import OPSET, PARITY_TOLERANCE
from inference.training.frameworks import framework_versions, import_tensorflow

logger = logging.getLogger("inference.training")

DIABETES = "diabetes"
DIGIT_IMAGES = "digit-images"
#: Relative tolerance of the regression parity gate (values are in the hundreds).
VALUE_PARITY_TOLERANCE = 1e-5


@dataclass
class BundledResult:
    """An exported, parity-checked file and what registration records with it."""

    name: str
    onnx_bytes: bytes
    registration: dict[str, Any]
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    model_card: str = ""
    keras_model: Any = field(default=None, repr=False)


def _export(model: Any, *, spec: Any, output: str, metadata: dict[str, str]) -> bytes:
    tf, _ = import_tensorflow()
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)

    @tf.function(input_signature=(spec,))
    def serve(x: Any) -> dict[str, Any]:
        return {output: model(x, training=False)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=(spec,), opset=OPSET)
    for value_info in list(proto.graph.input) + list(proto.graph.output):
        dim = value_info.type.tensor_type.shape.dim[0]
        if not dim.HasField("dim_value"):
            dim.dim_param = "batch"
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def parity_gate(
    model: Any, onnx_bytes: bytes, x: np.ndarray, *, input_name: str, output: str, classifier: bool
) -> dict[str, Any]:
    """ONNX Runtime against TensorFlow on ``x``: classifiers to 1e-5 and the same argmax, values to 1e-5 relative."""
    import onnxruntime as ort

    expected = np.asarray(model(x, training=False))
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    actual = session.run([output], {input_name: x})[0]
    if actual.shape != expected.shape:
        raise ParityError(
            f"Export refused: ONNX output shape {actual.shape} differs from TensorFlow's {expected.shape}.",
            figures={"onnx_shape": list(actual.shape), "tf_shape": list(expected.shape)},
        )
    diff = float(np.max(np.abs(actual - expected))) if len(x) else 0.0
    figures: dict[str, Any] = {"instances": len(x), "max_abs_diff": diff}
    if classifier:
        agree = actual.argmax(axis=1) == expected.argmax(axis=1)
        figures.update(tolerance=PARITY_TOLERANCE, argmax_agreement=float(agree.mean()))
        ok = diff <= PARITY_TOLERANCE and bool(agree.all())
    else:
        tolerance = VALUE_PARITY_TOLERANCE * max(1.0, float(np.max(np.abs(expected))))
        figures.update(tolerance=tolerance)
        ok = diff <= tolerance
    if not ok:
        raise ParityError(
            f"Export refused by the parity gate: on {len(x)} held-out instances ONNX Runtime differs from "
            f"TensorFlow by up to {diff:.3g} (allowed {figures['tolerance']:.3g}).",
            figures=figures,
        )
    return figures


def train_diabetes(
    *, seed: int = DEFAULT_SEED, epochs: int = 80, test_size: float = DEFAULT_TEST_SIZE
) -> BundledResult:
    """The regression model: Dense(32, relu) -> Dense(1), standardised target, un-standardised in the graph."""
    try:
        from sklearn.datasets import load_diabetes
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise TrainingError("The diabetes data set needs scikit-learn (the 'train' extra).") from exc
    tf, keras = import_tensorflow()
    data = load_diabetes()
    x_all, y_all = np.asarray(data.data, np.float32), np.asarray(data.target, np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x_all, y_all, test_size=test_size, random_state=seed)
    mean, std = float(y_train.mean()), float(y_train.std())
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(shape=(x_all.shape[1],), name="features"),
            keras.layers.Dense(32, activation="relu", name="hidden"),
            keras.layers.Dense(1, name="standardised"),
            # Answers in the data's units: clients never see the training-time standardisation.
            keras.layers.Rescaling(std, offset=mean, name="value"),
        ],
        name="diabetes_mlp",
    )
    # Train on the standardised target through the layers before the final rescaling.
    trunk = keras.Model(model.inputs, model.get_layer("standardised").output)
    trunk.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2), loss="mse")
    started = time.perf_counter()
    trunk.fit(x_train, (y_train - mean) / std, epochs=epochs, batch_size=64, shuffle=True, verbose=0)
    seconds = time.perf_counter() - started
    predicted = np.asarray(model(x_test, training=False)).reshape(-1)
    mae = float(np.mean(np.abs(predicted - y_test)))
    rmse = float(np.sqrt(np.mean((predicted - y_test) ** 2)))
    r2 = float(1 - np.sum((predicted - y_test) ** 2) / np.sum((y_test - y_test.mean()) ** 2))
    plausible = (float(np.floor(y_train.min())), float(np.ceil(y_train.max())))
    value_min, value_max = -1.0, 1.0  # the features are standardised and scaled to well inside [-1, 1]
    fingerprint = data_fingerprint({"data": data.data, "target": data.target})
    onnx_bytes = _export(
        model,
        spec=tf.TensorSpec([None, x_all.shape[1]], tf.float32, name="features"),
        output="value",
        metadata={
            META_OUTPUT_KIND: "regression",
            META_VALUE_MIN: repr(value_min),
            META_VALUE_MAX: repr(value_max),
            META_PLAUSIBLE_MIN: repr(plausible[0]),
            META_PLAUSIBLE_MAX: repr(plausible[1]),
            META_DATA_FINGERPRINT: fingerprint,
        },
    )
    parity = parity_gate(model, onnx_bytes, x_test, input_name="features", output="value", classifier=False)
    metrics = {
        "mae": round(mae, 4),
        "rmse": round(rmse, 4),
        "r2": round(r2, 4),
        "baseline_mae": round(float(np.mean(np.abs(y_test - y_train.mean()))), 4),
        "epochs": epochs,
        "seed": seed,
        "train_seconds": round(seconds, 3),
        "n_train": len(x_train),
        "n_test": len(x_test),
        "parity": parity,
    }
    lineage = {
        "training": "trained by inference.training.bundled",
        "dataset": "sklearn.datasets.load_diabetes (442 patients, 10 standardised features)",
        "split": f"random {1 - test_size:.0%}/{test_size:.0%} train/held-out, random_state={seed}",
        "data_fingerprint": fingerprint,
        "architecture": "Dense(32, relu) -> Dense(1) -> Rescaling(std, mean)",
        "optimizer": "Adam(learning_rate=0.01)",
        "loss_function": "mse on the standardised target",
        "export": "tf2onnx.convert.from_function",
        "opset": OPSET,
        "frameworks": framework_versions(),
    }
    result = BundledResult(
        name=DIABETES,
        onnx_bytes=onnx_bytes,
        registration={"value_min": value_min, "value_max": value_max, "output_kind": "regression"}
        | {"plausible_min": plausible[0], "plausible_max": plausible[1]},
        metrics=metrics,
        lineage=lineage,
        keras_model=model,
    )
    result.model_card = (
        f"# Model card: {DIABETES}\n\n"
        "## Intended purpose\n"
        "Predicts a quantitative measure of diabetes progression one year after baseline from ten standardised "
        "features (age, sex, BMI, blood pressure, six blood serum measurements). Demonstration model; not for "
        "clinical decisions.\n\n"
        "## Training data\n"
        f"{lineage['dataset']}; {lineage['split']}. Data fingerprint: `{fingerprint}`.\n\n"
        "## Model\n"
        f"{lineage['architecture']}; {lineage['optimizer']}, {epochs} epochs, batch 64, seed {seed}.\n\n"
        "## Evaluation (held-out set)\n"
        f"MAE {mae:.1f}, RMSE {rmse:.1f}, R² {r2:.3f} on {len(x_test)} patients "
        f"(predicting the training mean: MAE {metrics['baseline_mae']:.1f}).\n\n"
        "## Human oversight\n"
        f"Plausible range: [{plausible[0]:g}, {plausible[1]:g}] (the targets seen in training). A prediction "
        "outside it needs human review whenever a human-oversight policy applies.\n\n"
        "## Export\n"
        f"tf2onnx, opset {OPSET}. Parity with TensorFlow on the held-out set: max |diff| "
        f"{parity['max_abs_diff']:.2e} (allowed {parity['tolerance']:.2e}).\n"
    )
    return result


def train_digit_images(
    *, seed: int = DEFAULT_SEED, epochs: int = 30, test_size: float = DEFAULT_TEST_SIZE
) -> BundledResult:
    """The image classifier: uint8 ``[batch, 8, 8, 1]`` -> Rescaling -> Flatten -> Dense(128) x2 -> softmax."""
    tf, keras = import_tensorflow()
    dataset = load_dataset(None, seed=seed, test_size=test_size)
    x_train = dataset.x_train.reshape(-1, 8, 8, 1).astype(np.uint8)
    x_test = dataset.x_test.reshape(-1, 8, 8, 1).astype(np.uint8)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(shape=(8, 8, 1), dtype="uint8", name="image"),
            # Casting and scaling live in the graph: clients send the integer pixels.
            keras.layers.Rescaling(1.0 / 16.0, name="scale"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(128, activation="relu", name="hidden1"),
            keras.layers.Dense(128, activation="relu", name="hidden2"),
            keras.layers.Dense(len(dataset.labels), activation="softmax", name="probabilities"),
        ],
        name="digit_images_mlp",
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    model.fit(x_train, dataset.y_train, epochs=epochs, batch_size=32, shuffle=True, verbose=0)
    seconds = time.perf_counter() - started
    loss, accuracy = (float(v) for v in model.evaluate(x_test, dataset.y_test, verbose=0, batch_size=256))
    onnx_bytes = _export(
        model,
        spec=tf.TensorSpec([None, 8, 8, 1], tf.uint8, name="image"),
        output="probabilities",
        metadata={
            META_OUTPUT_KIND: "probabilities",
            META_LABELS: json.dumps(dataset.labels),
            META_VALUE_MIN: "0.0",
            META_VALUE_MAX: "16.0",
            META_DATA_FINGERPRINT: dataset.fingerprint,
        },
    )
    parity = parity_gate(model, onnx_bytes, x_test, input_name="image", output="probabilities", classifier=True)
    metrics = {
        "accuracy": round(accuracy, 6),
        "loss": round(loss, 6),
        "epochs": epochs,
        "seed": seed,
        "train_seconds": round(seconds, 3),
        "n_train": len(x_train),
        "n_test": len(x_test),
        "parity": parity,
    }
    lineage = {
        "training": "trained by inference.training.bundled",
        "dataset": dataset.source + ", as uint8 images [8, 8, 1]",
        "split": dataset.split,
        "data_fingerprint": dataset.fingerprint,
        "architecture": "Rescaling(1/16) -> Flatten -> Dense(128, relu) -> Dense(128, relu) -> Dense(10, softmax)",
        "optimizer": "Adam(learning_rate=0.001)",
        "loss_function": "sparse_categorical_crossentropy",
        "export": "tf2onnx.convert.from_function",
        "opset": OPSET,
        "frameworks": framework_versions(),
    }
    result = BundledResult(
        name=DIGIT_IMAGES,
        onnx_bytes=onnx_bytes,
        registration={"value_min": 0.0, "value_max": 16.0, "labels": dataset.labels, "output_kind": "probabilities"},
        metrics=metrics,
        lineage=lineage,
        keras_model=model,
    )
    result.model_card = (
        f"# Model card: {DIGIT_IMAGES}\n\n"
        "## Intended purpose\n"
        "Classifies a handwritten digit sent as an image of integer pixels, uint8 [8, 8, 1] with values 0-16, "
        f"into one of the classes {dataset.labels}. Demonstration model; not for decisions about people.\n\n"
        "## Training data\n"
        f"{lineage['dataset']}; {lineage['split']}. Data fingerprint: `{dataset.fingerprint}`.\n\n"
        "## Model\n"
        f"{lineage['architecture']}; {lineage['optimizer']}, {epochs} epochs, seed {seed}. Casting and scaling "
        "are in the graph.\n\n"
        "## Evaluation (held-out set)\n"
        f"Accuracy {accuracy:.4f} on {len(x_test)} images.\n\n"
        "## Export\n"
        f"tf2onnx, opset {OPSET}. Parity with TensorFlow on the held-out set: max |diff| "
        f"{parity['max_abs_diff']:.2e}, argmax agreement {parity['argmax_agreement']:.0%}.\n"
    )
    return result


#: name -> (trainer, quality gate on its metrics, a sentence for refusals)
TRAINERS = {
    DIABETES: (train_diabetes, lambda m: m["r2"] >= 0.3 and m["mae"] < m["baseline_mae"], "R² >= 0.3"),
    DIGIT_IMAGES: (train_digit_images, lambda m: m["accuracy"] >= 0.95, "accuracy >= 0.95"),
}
