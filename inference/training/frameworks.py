"""The optional TensorFlow stack: imported lazily, quietly, and described for lineage."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

from inference.training.errors import TrainingError


def import_tensorflow() -> tuple[Any, Any]:
    """TensorFlow and Keras, quietly, or a clear error when the ``train`` extra is missing."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras
        import tensorflow as tf
    except ImportError as exc:
        raise TrainingError(
            "Training needs the optional 'train' extra (tensorflow-cpu, tf2onnx, scikit-learn): "
            f"pip install -e '.[train]' ({exc})"
        ) from exc
    return tf, keras


def framework_versions() -> dict[str, str]:
    """Versions of everything that shaped the exported file."""
    tf, keras = import_tensorflow()
    # The module's own version: the distribution may be tensorflow, tensorflow-cpu or a vendor build.
    versions = {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__}
    for dist in ("tensorflow-cpu", "tf2onnx", "onnx", "onnxruntime", "numpy", "scikit-learn"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions
