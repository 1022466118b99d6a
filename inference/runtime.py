"""The ONNX Runtime serving core: verified loading, provider choice and one session per version.

Pure Python on top of ``onnxruntime`` and ``numpy`` only (no Django, no
TensorFlow), in the spirit of Triton's backend interface: *load* a verified
file into a session, *execute* batches on it, keep it for the life of the
process.  Django code describes what to load with a :class:`ModelSpec`; this
module never reads settings or the database.

Why the pieces look the way they do:

* The file is read into memory once, hashed, and the session is built from
  those same bytes, so the bytes that were verified are exactly the bytes that
  run (no window in which the file could change between check and load).
* ``InferenceSession.run`` is thread-safe, so one session per (name, version)
  serves every thread of a process; creating it costs tens of milliseconds and
  megabytes, which is why it never happens per request.
* A load that fails is remembered for a few seconds, so a corrupted file costs
  one hash and one log line per interval rather than per request.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from inference.signature import OutputKind, TensorSpec
from policy.evaluator import ModelFacts

logger = logging.getLogger("inference.runtime")

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"

#: How long a failed load is remembered before the file is read again.
FAILED_LOAD_RETRY_SECONDS = 5.0


class ModelLoadError(Exception):
    """A version that cannot be served: its file is missing, altered, truncated or not loadable.

    ``reason`` is precise (it may name paths: for logs and operators);
    ``public_reason`` is safe to show API clients.
    """

    def __init__(self, ref: str, reason: str, *, public_reason: str, fresh: bool = True):
        self.ref = ref
        self.reason = reason
        self.public_reason = public_reason
        # False when the error is a remembered failure rather than a new attempt.
        self.fresh = fresh
        super().__init__(f"model {ref} refused: {reason}")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to load and describe one registered version (built from the registry row)."""

    name: str
    version: int
    path: str
    sha256: str
    file_size: int | None
    input_name: str
    output_name: str
    input_width: int
    value_min: float
    value_max: float
    labels: tuple[Any, ...]
    risk_tier: str
    region: str
    #: The full signature (empty: the legacy one float32 ``[batch, input_width]`` input).
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    output_kind: str = OutputKind.PROBABILITIES
    plausible_min: float | None = None
    plausible_max: float | None = None

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"


class ServedModel:
    """A verified, warmed-up session for one version; shared by every thread of the process."""

    def __init__(self, spec: ModelSpec, session: ort.InferenceSession):
        self.spec = spec
        self.session = session
        self.name = spec.name
        self.version = spec.version
        self.sha256 = spec.sha256
        self.risk_tier = spec.risk_tier
        self.region = spec.region
        self.input_name = spec.input_name
        self.output_name = spec.output_name
        self.input_width = spec.input_width
        self.value_min = spec.value_min
        self.value_max = spec.value_max
        self.labels: list[Any] = list(spec.labels)
        self.inputs: tuple[TensorSpec, ...] = spec.inputs or (
            TensorSpec(spec.input_name, "float32", (None, spec.input_width)),
        )
        self.outputs: tuple[TensorSpec, ...] = spec.outputs or (
            TensorSpec(spec.output_name, "float32", (None, len(spec.labels))),
        )
        self.output_kind = spec.output_kind
        self.plausible_min = spec.plausible_min
        self.plausible_max = spec.plausible_max
        # The provider that actually runs the graph (a requested CUDA provider
        # that failed to initialise leaves the CPU provider first).
        self.provider: str = session.get_providers()[0]
        self.loaded_at = time.time()

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    def facts(self) -> ModelFacts:
        """What policy needs to know about this version."""
        return ModelFacts(name=self.name, version=self.version, risk_tier=self.risk_tier, region=self.region)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The primary output (class probabilities for classifiers) for a validated one-input batch."""
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def run_all(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the signature, by name, for validated feeds (one array per input)."""
        names = [o.name for o in self.outputs]
        return dict(zip(names, self.session.run(names, feeds), strict=True))

    def __repr__(self) -> str:
        return f"<ServedModel {self.ref} sha256={self.sha256[:12]} provider={self.provider}>"


def select_providers(*, available: Sequence[str] | None = None, preferred: Sequence[str] | None = None) -> list[str]:
    """The execution providers to request, best first.

    Without ``preferred`` (the ``INFERENCE_PROVIDERS`` setting): CUDA first when
    this onnxruntime build offers it (onnxruntime-gpu on a GPU machine), then
    CPU.  With it: that order, minus providers this build lacks (logged), and
    CPU appended as the fallback for operators another provider cannot run.
    """
    offered = list(ort.get_available_providers() if available is None else available)
    if preferred:
        chosen = [p for p in preferred if p in offered]
        missing = [p for p in preferred if p not in offered]
        if missing:
            logger.warning(
                "execution providers not available in this onnxruntime build",
                extra={"missing": missing, "available": offered},
            )
        if CPU_PROVIDER not in chosen:
            chosen.append(CPU_PROVIDER)
        return chosen
    if CUDA_PROVIDER in offered:
        return [CUDA_PROVIDER, CPU_PROVIDER]
    return [CPU_PROVIDER]


def read_verified(spec: ModelSpec) -> bytes:
    """The file's bytes, or :class:`ModelLoadError` when missing, truncated or not the registered file."""
    path = Path(spec.path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(spec.ref, f"file {path} is missing", public_reason="its model file is missing") from None
    except OSError as exc:
        raise ModelLoadError(
            spec.ref, f"file {path} cannot be read: {exc}", public_reason="its model file cannot be read"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest == spec.sha256:
        return data
    if spec.file_size is not None and len(data) < spec.file_size:
        reason = f"file {path} is truncated: {len(data)} of {spec.file_size} bytes"
        public = "its model file is truncated"
    else:
        reason = f"file {path} has SHA-256 {digest}, but {spec.sha256} was registered: the file was altered"
        public = "its model file does not match the registered SHA-256 checksum"
    raise ModelLoadError(spec.ref, reason, public_reason=public)


def session_options(*, intra_op_threads: int) -> ort.SessionOptions:
    """Options for a serving session: bounded threads so several workers do not oversubscribe cores."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(intra_op_threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads burn CPU that sibling workers need between requests.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def load_model(spec: ModelSpec, *, providers: Sequence[str], intra_op_threads: int = 1) -> ServedModel:
    """Verify the file, build the session from the verified bytes, check the signature and warm it up."""
    data = read_verified(spec)
    try:
        session = ort.InferenceSession(
            data, session_options(intra_op_threads=intra_op_threads), providers=list(providers)
        )
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise ModelLoadError(
            spec.ref,
            f"ONNX Runtime cannot load it: {exc}",
            public_reason="ONNX Runtime cannot load its model file",
        ) from exc
    inputs = {i.name for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    model = ServedModel(spec, session)
    expected_in = {t.name for t in model.inputs}
    expected_out = {t.name for t in model.outputs} | {spec.output_name}
    if expected_in != inputs or not expected_out <= outputs:
        raise ModelLoadError(
            spec.ref,
            f"graph has inputs {sorted(inputs)} and outputs {sorted(outputs)}; "
            f"expected inputs {sorted(expected_in)} and outputs {sorted(expected_out)}",
            public_reason="its graph does not match the registered signature",
        )
    # Warm-up: the first run allocates buffers and picks kernels; pay it here, not in a request.
    probe = {
        t.name: np.full((1, *t.instance_shape), 0 if t.dtype == "bool" else spec.value_min).astype(t.dtype)
        for t in model.inputs
    }
    try:
        output = model.run_all(probe)[spec.output_name] if spec.inputs else model.run(probe[spec.input_name])
    except Exception as exc:
        raise ModelLoadError(spec.ref, f"warm-up run failed: {exc}", public_reason="its model fails to run") from exc
    if spec.output_kind in OutputKind.CLASSIFIERS and output.shape != (1, len(spec.labels)):
        raise ModelLoadError(
            spec.ref,
            f"warm-up output has shape {output.shape}; expected (1, {len(spec.labels)})",
            public_reason="its graph does not match the registered signature",
        )
    logger.info(
        "model loaded",
        extra={"model": spec.ref, "sha256": spec.sha256, "provider": model.provider, "providers": list(providers)},
    )
    return model


@dataclass
class _Failure:
    sha256: str
    at: float
    error: ModelLoadError


class SessionRegistry:
    """The process's sessions: at most one per (name, version), created once under a per-key lock."""

    def __init__(self, *, retry_seconds: float = FAILED_LOAD_RETRY_SECONDS):
        self.retry_seconds = retry_seconds
        self._lock = threading.Lock()
        self._models: dict[tuple[str, int], ServedModel] = {}
        self._key_locks: dict[tuple[str, int], threading.Lock] = {}
        self._failures: dict[tuple[str, int], _Failure] = {}

    def _key_lock(self, key: tuple[str, int]) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def cached(self, spec: ModelSpec) -> ServedModel | None:
        """The loaded session for this very ``spec`` object, or ``None`` (then call :meth:`get`).

        The lock-free fast path of :meth:`get`, for callers whose load options cost
        something to compute: identity with the spec the session was built or last
        refreshed from means its governance facts are current.
        """
        model = self._models.get((spec.name, spec.version))
        if model is not None and model.spec is spec:
            return model
        return None

    def get(self, spec: ModelSpec, *, providers: Sequence[str], intra_op_threads: int = 1) -> ServedModel:
        """The loaded session for ``spec``, loading it on first use; raises :class:`ModelLoadError`."""
        key = (spec.name, spec.version)
        model = self.cached(spec)
        if model is not None:
            return model
        # Other threads wanting the same version wait here for one load instead of racing N loads.
        with self._key_lock(key):
            model = self._models.get(key)
            if model is not None and model.sha256 == spec.sha256:
                if model.spec != spec:
                    # Same file, new governance facts (risk tier, region, labels): keep the
                    # session, describe it afresh so policy never sees stale facts.
                    model = ServedModel(spec, model.session)
                    self._models[key] = model
                else:
                    # Equal facts in a new object (the cache was refreshed): adopt it so the
                    # identity check above is the fast path again.
                    model.spec = spec
                return model
            failure = self._failures.get(key)
            if (
                failure is not None
                and failure.sha256 == spec.sha256
                and time.monotonic() - failure.at < self.retry_seconds
            ):
                err = failure.error
                raise ModelLoadError(err.ref, err.reason, public_reason=err.public_reason, fresh=False)
            try:
                model = load_model(spec, providers=providers, intra_op_threads=intra_op_threads)
            except ModelLoadError as exc:
                logger.error("model refused", extra={"model": spec.ref, "reason": exc.reason})
                self._failures[key] = _Failure(sha256=spec.sha256, at=time.monotonic(), error=exc)
                raise
            self._failures.pop(key, None)
            self._models[key] = model
            return model

    def peek(self, name: str, version: int) -> ServedModel | None:
        """The loaded session for (name, version), without loading."""
        return self._models.get((name, version))

    def loaded(self) -> list[ServedModel]:
        """Every session this process holds."""
        return list(self._models.values())

    def evict(self, name: str, version: int) -> None:
        """Drop a session (its version was retired); requests holding it finish normally."""
        with self._lock:
            self._models.pop((name, version), None)
            self._failures.pop((name, version), None)

    def clear(self) -> None:
        """Forget every session and remembered failure (tests)."""
        with self._lock:
            self._models.clear()
            self._failures.clear()


#: The process-wide registry used by :mod:`inference.selectors`.
sessions = SessionRegistry()
