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

from inference.signature import SignatureError, TensorSpec, inputs_check, tensors_from_signature

MODEL_FILENAME = "model.onnx"
#: ONNX metadata keys this project's exporter writes and registration reads back.  They
#: live here, not in the training package, so registration never imports that package.
META_LABELS = "maas.labels"
META_VALUE_MIN = "maas.value_min"
META_VALUE_MAX = "maas.value_max"
META_DATA_FINGERPRINT = "maas.data_fingerprint"
META_OUTPUT_KIND = "maas.output_kind"
META_PLAUSIBLE_MIN = "maas.plausible_min"
META_PLAUSIBLE_MAX = "maas.plausible_max"
#: The output a classifier exported by this project carries; other files may name it differently.
PREFERRED_OUTPUT = "probabilities"


class InvalidOnnxFile(ValueError):
    """The bytes are not an ONNX model this gateway can serve; the message says why."""


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
    """Read and check the signature: typed inputs with one dynamic batch axis, at least one output.

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
    specs = tensors_from_signature(signature, "inputs")
    try:
        inputs_check(specs)
    except SignatureError as exc:
        raise InvalidOnnxFile(str(exc)) from None
    if not outputs:
        raise InvalidOnnxFile("the graph has no outputs")
    tensor_out = next((o for o in outputs if o["name"] == PREFERRED_OUTPUT), outputs[0])
    shape_out = tensor_out["shape"]
    classes = shape_out[1] if len(shape_out) == 2 else None
    return OnnxSignature(
        signature=signature,
        input_name=specs[0].name,
        input_width=specs[0].instance_size,
        output_name=tensor_out["name"],
        n_classes=classes if isinstance(classes, int) else None,
    )


def probe_feeds(inputs: tuple[TensorSpec, ...], *, batch: int, fill: float = 0.0) -> dict[str, np.ndarray]:
    """A batch of ``batch`` constant instances for every input (registration probe, load warm-up)."""
    return {spec.name: np.full((batch, *spec.instance_shape), fill).astype(spec.dtype) for spec in inputs}


def probe_outputs(data: bytes, sig: OnnxSignature) -> dict[str, tuple[int, ...]]:
    """Run the graph once on a batch of two; return every output's shape.

    Proves the file loads in ONNX Runtime and that every output follows the
    dynamic batch axis, before anyone can activate it.
    """
    import onnxruntime as ort

    inputs = tensors_from_signature(sig.signature, "inputs")
    names = [o["name"] for o in sig.signature["outputs"]]
    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        results = session.run(names, probe_feeds(inputs, batch=2))
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise InvalidOnnxFile(f"ONNX Runtime cannot run it on a batch of 2: {exc}") from None
    shapes = {name: tuple(int(d) for d in np.shape(out)) for name, out in zip(names, results, strict=True)}
    for name, shape in shapes.items():
        if not shape or shape[0] != 2:
            raise InvalidOnnxFile(f"a batch of 2 produced output {name!r} of shape {shape}; its first axis must be 2")
    return shapes


def probe_classes(data: bytes, sig: OnnxSignature) -> int:
    """The number of columns of the primary output on a batch of two (classifiers)."""
    shape = probe_outputs(data, sig)[sig.output_name]
    if len(shape) != 2:
        raise InvalidOnnxFile(f"a batch of 2 produced output of shape {shape}; expected (2, classes)")
    return int(shape[1])
