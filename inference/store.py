"""The model store on disk and what can be read from an ONNX file before it is registered.

Layout: ``<store>/<name>/<version>/model.onnx``, the shape of a Triton model
repository, so a Triton or KServe deployment could read the same directory.
Files are written atomically (temporary file, fsync, rename): a reader sees
the old file or the whole new one, never half of it.

No Django here; the registry services pass the store directory in.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODEL_FILENAME = "model.onnx"
#: ONNX metadata keys this project's exporter writes and registration reads back.  They
#: live here, not in the training package, so registration never imports that package.
META_LABELS = "maas.labels"
META_VALUE_MIN = "maas.value_min"
META_VALUE_MAX = "maas.value_max"
META_DATA_FINGERPRINT = "maas.data_fingerprint"
#: The output a classifier exported by this project carries; other files may name it differently.
PREFERRED_OUTPUT = "probabilities"


class InvalidOnnxFile(ValueError):
    """The bytes are not an ONNX classifier this gateway can serve; the message says why."""


@dataclass(frozen=True)
class OnnxSignature:
    """Inputs and outputs read from the graph, plus the facts serving needs."""

    signature: dict[str, Any]
    input_name: str
    input_width: int
    output_name: str
    n_classes: int | None


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def relative_path(name: str, version: int) -> str:
    """Where version ``version`` of ``name`` lives, relative to the store."""
    return f"{name}/{version}/{MODEL_FILENAME}"


def stage_model_file(*, store_dir: str | Path, name: str, data: bytes) -> Path:
    """Write ``data`` durably to a temporary file beside the name's versions; return its path.

    Registration stages first and renames into place only once its database
    row holds the version number, so two concurrent registrations can never
    overwrite each other's file.
    """
    directory = Path(store_dir) / name
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".staged-", suffix=".onnx", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def place_model_file(*, staged: Path, store_dir: str | Path, name: str, version: int) -> Path:
    """Atomically move a staged file to ``<store>/<name>/<version>/model.onnx``."""
    target = Path(store_dir) / relative_path(name, version)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, target)
    return target


def write_model_file(*, store_dir: str | Path, name: str, version: int, data: bytes) -> Path:
    """Write ``data`` atomically to its place in the store (tools and tests; registration stages first)."""
    staged = stage_model_file(store_dir=store_dir, name=name, data=data)
    return place_model_file(staged=staged, store_dir=store_dir, name=name, version=version)


def _describe(value_info: Any) -> dict[str, Any]:
    from onnx import helper

    tensor = value_info.type.tensor_type
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
    except (KeyError, TypeError, ValueError):
        dtype = f"onnx:{tensor.elem_type}"
    shape: list[int | str | None] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value"):
            shape.append(int(dim.dim_value))
        else:
            shape.append(dim.dim_param or None)
    return {"name": value_info.name, "dtype": dtype, "shape": shape}


def onnx_signature(data: bytes) -> OnnxSignature:
    """Read and check the signature: one float32 input ``[batch, width]``, a ``[batch, classes]`` output.

    ``onnx`` is imported here, not at module level: only registration needs
    it, never the serving path.
    """
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
        onnx.checker.check_model(model)
    except (DecodeError, onnx.checker.ValidationError, ValueError) as exc:
        raise InvalidOnnxFile(f"not a valid ONNX model: {exc}") from None
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [_describe(vi) for vi in graph.input if vi.name not in initializers]
    outputs = [_describe(vi) for vi in graph.output]
    signature = {
        "inputs": inputs,
        "outputs": outputs,
        "opset": {(entry.domain or "ai.onnx"): int(entry.version) for entry in model.opset_import},
        "ir_version": int(model.ir_version),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
    }
    if len(inputs) != 1:
        raise InvalidOnnxFile(f"the graph has {len(inputs)} inputs; exactly one [batch, width] input is needed")
    (tensor_in,) = inputs
    width = tensor_in["shape"][1] if len(tensor_in["shape"]) == 2 else None
    if tensor_in["dtype"] != "float32" or not isinstance(width, int) or width < 1:
        raise InvalidOnnxFile(
            f"input {tensor_in['name']!r} is {tensor_in['dtype']} {tensor_in['shape']}; "
            "a float32 input of shape [batch, width] with a fixed width is needed"
        )
    if not outputs:
        raise InvalidOnnxFile("the graph has no outputs")
    tensor_out = next((o for o in outputs if o["name"] == PREFERRED_OUTPUT), outputs[0])
    if len(tensor_out["shape"]) != 2:
        raise InvalidOnnxFile(
            f"output {tensor_out['name']!r} has shape {tensor_out['shape']}; [batch, classes] is needed"
        )
    classes = tensor_out["shape"][1]
    return OnnxSignature(
        signature=signature,
        input_name=tensor_in["name"],
        input_width=width,
        output_name=tensor_out["name"],
        n_classes=classes if isinstance(classes, int) else None,
    )


def probe_classes(data: bytes, sig: OnnxSignature) -> int:
    """Run the graph once on a batch of two zero rows; return the number of output classes.

    Proves the file loads in ONNX Runtime and has a dynamic batch dimension
    before anyone can activate it.
    """
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        output = session.run([sig.output_name], {sig.input_name: np.zeros((2, sig.input_width), np.float32)})[0]
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise InvalidOnnxFile(f"ONNX Runtime cannot run it on a batch of 2: {exc}") from None
    if output.ndim != 2 or output.shape[0] != 2:
        raise InvalidOnnxFile(f"a batch of 2 produced output of shape {output.shape}; expected (2, classes)")
    return int(output.shape[1])
