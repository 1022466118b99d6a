"""Training the digit classifier with TensorFlow and exporting it to ONNX behind a parity gate.

Django-free, and the only package that imports TensorFlow (lazily, inside the
functions): serving needs onnxruntime and numpy only, and TensorFlow is the
optional ``train`` extra.  :mod:`.data` loads and fingerprints the arrays,
:mod:`.export` converts and checks, this module trains and writes the model
card.

The model is the classic multilayer perceptron (Dense 128 ReLU, Dense 128
ReLU, softmax over the classes) trained with Adam on sparse categorical
cross-entropy.  Scaling of raw pixel values is a ``Rescaling`` layer inside
the graph, so clients send raw pixels (0-16 for scikit-learn's digits, 0-255
for MNIST) and the ONNX file is self-contained.

Export: with Keras 3, ``tf2onnx.convert.from_keras`` fails, so a
``tf.function`` with an explicit ``TensorSpec`` (dynamic batch, input named
``pixels``) returning ``{"probabilities": ...}`` goes through
``tf2onnx.convert.from_function``.  Before the bytes leave this module, ONNX
Runtime must reproduce TensorFlow's outputs on the whole held-out set (max
absolute difference at most 1e-5, identical argmax); otherwise
:class:`~inference.training.errors.ParityError` refuses the export.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference.training.data import DEFAULT_SEED, DEFAULT_TEST_SIZE, Dataset, data_fingerprint, load_dataset
from inference.training.errors import DatasetError, ParityError, TrainingError
from inference.training.export import (
    INPUT_NAME,
    META_DATA_FINGERPRINT,
    META_LABELS,
    META_VALUE_MAX,
    META_VALUE_MIN,
    OPSET,
    OUTPUT_NAME,
    PARITY_TOLERANCE,
    export_onnx,
    parity_check,
)
from inference.training.frameworks import framework_versions, import_tensorflow

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "PARITY_TOLERANCE",
    "Dataset",
    "DatasetError",
    "EpochProgress",
    "ParityError",
    "TrainingConfig",
    "TrainingError",
    "TrainingResult",
    "build_model",
    "data_fingerprint",
    "export_onnx",
    "framework_versions",
    "import_tensorflow",
    "load_dataset",
    "model_card_fields",
    "model_card_text",
    "parity_check",
    "train_model",
]

logger = logging.getLogger("inference.training")

DEFAULT_EPOCHS = 30
DEFAULT_BATCH_SIZE = 32
DEFAULT_LEARNING_RATE = 1e-3
HIDDEN_UNITS = 128


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters and data choice of one training run."""

    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    seed: int = DEFAULT_SEED
    data_path: str | None = None
    test_size: float = DEFAULT_TEST_SIZE
    learning_rate: float = DEFAULT_LEARNING_RATE


@dataclass(frozen=True)
class EpochProgress:
    """What a progress display needs after each epoch."""

    epoch: int
    epochs: int
    loss: float
    accuracy: float
    elapsed: float


@dataclass
class TrainingResult:
    """An exported, parity-checked ONNX file and everything the registry records with it."""

    onnx_bytes: bytes
    input_width: int
    value_min: float
    value_max: float
    labels: list[int]
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    keras_model: Any = field(repr=False)
    dataset: Dataset = field(repr=False)


def build_model(
    *, width: int, value_min: float, value_max: float, n_classes: int, learning_rate: float = DEFAULT_LEARNING_RATE
) -> Any:
    """The MLP with its preprocessing, compiled with Adam and sparse categorical cross-entropy."""
    _, keras = import_tensorflow()
    span = value_max - value_min
    model = keras.Sequential(
        [
            keras.Input(shape=(width,), name=INPUT_NAME),
            # Scaling lives in the graph: clients send raw values and the ONNX file is self-contained.
            keras.layers.Rescaling(1.0 / span, offset=-value_min / span, name="scale"),
            keras.layers.Dense(HIDDEN_UNITS, activation="relu", name="hidden1"),
            keras.layers.Dense(HIDDEN_UNITS, activation="relu", name="hidden2"),
            keras.layers.Dense(n_classes, activation="softmax", name="probabilities"),
        ],
        name="mlp",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def train_model(
    config: TrainingConfig | None = None, *, progress: Callable[[EpochProgress], None] | None = None
) -> TrainingResult:
    """Load data, train, evaluate on the held-out set, export to ONNX and pass the parity gate."""
    config = config or TrainingConfig()
    if config.epochs < 1 or config.batch_size < 1:
        raise TrainingError("epochs and batch size must be at least 1")
    dataset = load_dataset(config.data_path, seed=config.seed, test_size=config.test_size)
    _, keras = import_tensorflow()
    keras.utils.set_random_seed(config.seed)
    model = build_model(
        width=dataset.width,
        value_min=dataset.value_min,
        value_max=dataset.value_max,
        n_classes=len(dataset.labels),
        learning_rate=config.learning_rate,
    )
    started = time.perf_counter()

    class _Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if progress is not None:
                logs = logs or {}
                progress(
                    EpochProgress(
                        epoch=epoch + 1,
                        epochs=config.epochs,
                        loss=float(logs.get("loss", float("nan"))),
                        accuracy=float(logs.get("accuracy", float("nan"))),
                        elapsed=time.perf_counter() - started,
                    )
                )

    history = model.fit(
        dataset.x_train,
        dataset.y_train,
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[_Progress()],
    )
    train_seconds = time.perf_counter() - started
    loss, accuracy = model.evaluate(dataset.x_test, dataset.y_test, verbose=0, batch_size=256)
    predicted = np.asarray(model(dataset.x_test, training=False)).argmax(axis=1)
    per_class = {
        str(label): round(float((predicted[dataset.y_test == i] == i).mean()), 4)
        for i, label in enumerate(dataset.labels)
        if (dataset.y_test == i).any()
    }
    onnx_bytes = export_onnx(
        model,
        width=dataset.width,
        metadata_props={
            META_LABELS: json.dumps(dataset.labels),
            META_VALUE_MIN: repr(dataset.value_min),
            META_VALUE_MAX: repr(dataset.value_max),
            META_DATA_FINGERPRINT: dataset.fingerprint,
        },
    )
    parity = parity_check(model, onnx_bytes, dataset.x_test)
    metrics = {
        "accuracy": round(float(accuracy), 6),
        "loss": round(float(loss), 6),
        "train_accuracy": round(float(history.history["accuracy"][-1]), 6),
        "train_loss": round(float(history.history["loss"][-1]), 6),
        "per_class_recall": per_class,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "learning_rate": config.learning_rate,
        "train_seconds": round(train_seconds, 3),
        "n_train": len(dataset.x_train),
        "n_test": len(dataset.x_test),
        "parity": parity,
    }
    n_classes = len(dataset.labels)
    lineage = {
        "training": "trained by inference.training",
        "dataset": dataset.source,
        "split": dataset.split,
        "data_fingerprint": dataset.fingerprint,
        "architecture": f"Rescaling -> Dense({HIDDEN_UNITS}, relu) -> Dense({HIDDEN_UNITS}, relu) -> "
        f"Dense({n_classes}, softmax)",
        "optimizer": f"Adam(learning_rate={config.learning_rate:g})",
        "loss_function": "sparse_categorical_crossentropy",
        "preprocessing": f"in-graph Rescaling: (x - {dataset.value_min:g}) / {dataset.value_max - dataset.value_min:g}",
        "export": "tf2onnx.convert.from_function",
        "opset": OPSET,
        "frameworks": framework_versions(),
    }
    logger.info("training finished", extra={"accuracy": metrics["accuracy"], "seconds": metrics["train_seconds"]})
    return TrainingResult(
        onnx_bytes=onnx_bytes,
        input_width=dataset.width,
        value_min=dataset.value_min,
        value_max=dataset.value_max,
        labels=dataset.labels,
        metrics=metrics,
        lineage=lineage,
        keras_model=model,
        dataset=dataset,
    )


def model_card_text(*, name: str, result: TrainingResult, risk_tier: str, region: str) -> str:
    """A Markdown model card (EU AI Act Annex IV style) from what training recorded."""
    m, lin = result.metrics, result.lineage
    parity = m["parity"]
    recall = ", ".join(f"{label}: {value:.2f}" for label, value in m["per_class_recall"].items())
    return (
        f"# Model card: {name}\n\n"
        "## Intended purpose\n"
        f"Classifies a handwritten digit image, sent as {result.input_width} raw pixel values in "
        f"[{result.value_min:g}, {result.value_max:g}], into one of the classes {result.labels}. "
        "Demonstration and benchmarking model; not intended for decisions about people.\n\n"
        "## Training data\n"
        f"{lin['dataset']}; {lin['split']}. Data fingerprint (SHA-256 of the arrays): `{lin['data_fingerprint']}`.\n\n"
        "## Model\n"
        f"{lin['architecture']}; {lin['optimizer']}, {lin['loss_function']}, {m['epochs']} epochs, "
        f"batch {m['batch_size']}, seed {m['seed']}. {lin['preprocessing']}.\n\n"
        "## Evaluation (held-out set)\n"
        f"Accuracy {m['accuracy']:.4f}, loss {m['loss']:.4f} on {m['n_test']} instances. "
        f"Per-class recall: {recall}.\n\n"
        "## Export\n"
        f"{lin['export']}, ONNX opset {lin['opset']}. Parity with TensorFlow on the held-out set: "
        f"max |diff| {parity['max_abs_diff']:.2e} (allowed {parity['tolerance']:g}), "
        f"argmax agreement {parity['argmax_agreement']:.0%}.\n\n"
        "## Governance\n"
        f"Risk tier: {risk_tier}. Deployment region: {region}.\n\n"
        "## Limitations\n"
        "Trained on small, centred, clean digit images; expect lower accuracy on other scanners, handwriting "
        "styles or non-digit input. The top probability is not a calibrated confidence.\n"
    )


def model_card_fields(*, result: TrainingResult) -> dict[str, Any]:
    """The structured model card fields training can state (``inference.model_card``).

    The risk rationale is the operator's to give (``manage.py model_card``):
    training cannot know where the model will be used.
    """
    m, lin = result.metrics, result.lineage
    return {
        "intended_purpose": (
            f"Classifies a handwritten digit image, sent as {result.input_width} raw pixel values in "
            f"[{result.value_min:g}, {result.value_max:g}], into one of the classes {result.labels}. "
            "Demonstration and benchmarking model."
        ),
        "out_of_scope_uses": "Decisions about people; images that are not single centred handwritten digits.",
        "training_data": (
            f"{lin['dataset']}; {lin['split']}; {m['n_train']} training and {m['n_test']} held-out instances. "
            f"Data fingerprint (SHA-256): {lin['data_fingerprint']}."
        ),
        "limitations": (
            "Trained on small, centred, clean digit images; expect lower accuracy on other scanners, handwriting "
            "styles or non-digit input. The top probability is not a calibrated confidence."
        ),
    }
