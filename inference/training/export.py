"""Export to ONNX with tf2onnx and the parity gate that every export must pass.

With Keras 3, ``tf2onnx.convert.from_keras`` fails, so a ``tf.function`` with
an explicit ``TensorSpec`` (dynamic batch, input named ``pixels``) returning
``{"probabilities": ...}`` goes through ``tf2onnx.convert.from_function``.
Before the bytes leave this module, ONNX Runtime must reproduce TensorFlow's
outputs (max absolute difference at most 1e-5, identical argmax); otherwise
:class:`~inference.training.errors.ParityError` refuses the export.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

# The ONNX metadata keys this exporter writes, read back by ``model_version_register``.
from inference.store import META_DATA_FINGERPRINT, META_LABELS, META_VALUE_MAX, META_VALUE_MIN
from inference.training.errors import ParityError
from inference.training.frameworks import import_tensorflow

__all__ = [
    "INPUT_NAME",
    "META_DATA_FINGERPRINT",
    "META_LABELS",
    "META_VALUE_MAX",
    "META_VALUE_MIN",
    "OPSET",
    "OUTPUT_NAME",
    "PARITY_TOLERANCE",
    "export_onnx",
    "parity_check",
]

OPSET = 17
PARITY_TOLERANCE = 1e-5
INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"


def export_onnx(model: Any, *, width: int, metadata_props: dict[str, str] | None = None, opset: int = OPSET) -> bytes:
    """Convert through a ``tf.function`` with an explicit signature; dynamic batch named ``batch``."""
    tf, _ = import_tensorflow()
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    spec = (tf.TensorSpec([None, width], tf.float32, name=INPUT_NAME),)

    @tf.function(input_signature=spec)
    def serve(pixels: Any) -> dict[str, Any]:
        return {OUTPUT_NAME: model(pixels, training=False)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
    for value_info in list(proto.graph.input) + list(proto.graph.output):
        dim = value_info.type.tensor_type.shape.dim[0]
        if not dim.HasField("dim_value"):
            dim.dim_param = "batch"
    for key, value in (metadata_props or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def _onnx_probabilities(onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def parity_check(
    model: Any, onnx_bytes: bytes, x: np.ndarray, *, tolerance: float = PARITY_TOLERANCE
) -> dict[str, Any]:
    """Compare ONNX Runtime with TensorFlow on ``x``; return the figures or raise :class:`ParityError`."""
    expected = np.asarray(model(x, training=False))
    actual = _onnx_probabilities(onnx_bytes, x)
    if actual.shape != expected.shape:
        raise ParityError(
            f"Export refused: ONNX output shape {actual.shape} differs from TensorFlow's {expected.shape}.",
            figures={"onnx_shape": list(actual.shape), "tf_shape": list(expected.shape)},
        )
    max_abs_diff = float(np.max(np.abs(actual - expected))) if len(x) else 0.0
    agree = actual.argmax(axis=1) == expected.argmax(axis=1)
    figures = {
        "instances": len(x),
        "max_abs_diff": max_abs_diff,
        "tolerance": tolerance,
        "argmax_agreement": float(agree.mean()) if len(x) else 1.0,
        "argmax_mismatches": int((~agree).sum()),
    }
    if max_abs_diff > tolerance or not agree.all():
        raise ParityError(
            f"Export refused by the parity gate: on {len(x)} held-out instances ONNX Runtime differs from "
            f"TensorFlow by up to {max_abs_diff:.3g} (allowed {tolerance:g}) and disagrees on "
            f"{figures['argmax_mismatches']} predicted classes (allowed 0).",
            figures=figures,
        )
    return figures
