"""Model signatures: the tensors a registered file takes and gives, and what its outputs mean.

Pure numpy (no Django, no onnxruntime), shared by registration, serving and
both protocols.  A signature is read from the ONNX graph at registration and
stored with the version (``ModelVersion.signature``): every input and output
with its name, element type and shape, where the first axis is the one
dynamic batch axis and every other axis is fixed.  That is what Triton and
KServe serve; requests are validated against it before anything runs.

The *output kind*, recorded at registration, says how the primary output is
read: class ``probabilities`` (with labels), ``logits`` (softmax applied by
the gateway), ``regression`` values, or raw ``tensor`` outputs returned as
they are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


class SignatureError(ValueError):
    """A graph signature the gateway cannot serve; the message says why."""


#: Element types a model input may have (numpy names, as stored in the signature).
INPUT_DTYPES = ("float32", "float64", "int64", "int32", "uint8", "bool")

#: numpy dtype name -> Open Inference Protocol datatype.
V2_DATATYPES: dict[str, str] = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}
#: Open Inference Protocol datatype -> numpy dtype name.
NUMPY_DTYPES: dict[str, str] = {v: k for k, v in V2_DATATYPES.items()}


class OutputKind:
    """How a model's primary output is read (``ModelVersion.output_kind``)."""

    PROBABILITIES = "probabilities"
    LOGITS = "logits"
    REGRESSION = "regression"
    TENSOR = "tensor"

    CHOICES = (PROBABILITIES, LOGITS, REGRESSION, TENSOR)
    CLASSIFIERS = (PROBABILITIES, LOGITS)


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: its name, numpy element type and shape (``None`` = the batch axis)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> TensorSpec:
        """From a stored signature entry ``{"name", "dtype", "shape"}`` (dynamic axes as names or null)."""
        shape = tuple(d if isinstance(d, int) and not isinstance(d, bool) and d > 0 else None for d in entry["shape"])
        return cls(name=str(entry["name"]), dtype=str(entry["dtype"]), shape=shape)

    @property
    def instance_shape(self) -> tuple[int, ...]:
        """The shape of one instance (every axis after the batch axis), all fixed for inputs."""
        return tuple(d if d is not None else -1 for d in self.shape[1:])

    @property
    def instance_size(self) -> int:
        """Values per instance."""
        return int(math.prod(self.instance_shape))

    @property
    def v2_datatype(self) -> str:
        """The Open Inference Protocol datatype of this tensor."""
        return V2_DATATYPES.get(self.dtype, self.dtype.upper())

    @property
    def v2_shape(self) -> list[int]:
        """The shape as the protocol's metadata states it: ``-1`` for the batch and other dynamic axes."""
        return [d if d is not None else -1 for d in self.shape]

    def describe(self) -> str:
        """``name dtype [batch, 8, 8, 1]``, for error messages."""
        dims = ", ".join("batch" if i == 0 else str(d if d is not None else "?") for i, d in enumerate(self.shape))
        return f"{self.name!r} ({self.dtype} [{dims}])"


def tensors_from_signature(signature: Mapping[str, Any], key: str) -> tuple[TensorSpec, ...]:
    """The ``inputs`` or ``outputs`` of a stored signature as :class:`TensorSpec` objects."""
    return tuple(TensorSpec.from_json(entry) for entry in signature.get(key) or ())


def inputs_check(inputs: Sequence[TensorSpec]) -> None:
    """Refuse inputs the gateway cannot validate: unsupported types, no batch axis, other dynamic axes."""
    if not inputs:
        raise SignatureError("the graph has no inputs")
    for spec in inputs:
        if spec.dtype not in INPUT_DTYPES:
            raise SignatureError(
                f"input {spec.name!r} is {spec.dtype}; supported input types are {', '.join(INPUT_DTYPES)}"
            )
        if not spec.shape or spec.shape[0] is not None:
            raise SignatureError(f"input {spec.name!r} has shape {list(spec.shape)}; its first axis must be the batch")
        if any(d is None for d in spec.shape[1:]):
            raise SignatureError(
                f"input {spec.name!r} has shape {list(spec.shape)}; only the batch axis may be dynamic"
            )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, stable for large logits."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def labels_check(labels: Sequence[Any]) -> list[Any]:
    """Class labels are all integers or all strings, and distinct; returns them as a list."""
    labels = list(labels)
    if all(isinstance(label, int) and not isinstance(label, bool) for label in labels):
        pass
    elif not all(isinstance(label, str) and label for label in labels):
        raise SignatureError("class labels must be all integers or all non-empty strings")
    if len(set(labels)) != len(labels):
        raise SignatureError("class labels must be distinct")
    return labels


def labels_are_strings(labels: Sequence[Any]) -> bool:
    """Whether a model's labels are strings (v2 ``BYTES``) rather than integers (v2 ``INT64``)."""
    return bool(labels) and isinstance(labels[0], str)
