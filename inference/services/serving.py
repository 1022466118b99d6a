"""The runtime API the gateway calls: validate instances, run the model, shape the prediction.

Independent of HTTP: the REST endpoint, the Open Inference Protocol endpoint
and batch jobs all go through :func:`instances_validate` and
:func:`model_predict` (or :func:`instances_predict`, which also resolves the
model).  Validation answers every malformed input with an ``InvalidInput``
(400) naming the instance at fault and what was expected, so nothing a client
sends can turn into a 500.
"""

from __future__ import annotations

import itertools
import logging
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings

from core.errors import InvalidInput
from inference.errors import BatchTooLarge, ModelUnavailable
from inference.runtime import ServedModel
from inference.selectors import model_serving_get
from inference.signature import OutputKind, TensorSpec, softmax

logger = logging.getLogger("inference.serving")

_PLAIN_NUMBERS = frozenset({int, float})


@dataclass(frozen=True)
class Prediction:
    """One batch's outputs, read according to the model's output kind.

    Classifiers (``probabilities``, ``logits``): the predicted label and its
    probability per instance, and all probabilities (softmax of the logits).
    Regression: ``values``, the primary output.  Every kind: ``outputs``, each
    output of the graph as it came out (raw tensors are answered from it).
    """

    model_name: str
    model_version: int
    labels: list[Any]
    top_probabilities: list[float]
    probabilities: np.ndarray | None
    kind: str = OutputKind.PROBABILITIES
    values: np.ndarray | None = None
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


def _is_number(value: Any) -> bool:
    # JSON booleans are not numbers, although Python (and numpy) would happily treat them as 0 and 1.
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _first_bad_value(instances: Any, *, width: int) -> InvalidInput:
    """The slow path, run only once a batch is known to be bad: name the first offending value."""
    for i, row in enumerate(instances):
        for j, value in enumerate(row):
            if not _is_number(value):
                return InvalidInput(
                    f"instances[{i}][{j}] is {_describe(value)} ({type(value).__name__}), not a number.",
                    instance=i,
                    expected_width=width,
                )
            try:
                finite = math.isfinite(value)
            except OverflowError:
                return InvalidInput(
                    f"instances[{i}][{j}] is too large to be a pixel value.", instance=i, expected_width=width
                )
            if not finite:
                return InvalidInput(
                    f"instances[{i}][{j}] is {value}; values must be finite numbers.", instance=i, expected_width=width
                )
    return InvalidInput("instances contain a value that is not a finite number.", expected_width=width)


def _check_values(array: np.ndarray, *, model: ServedModel) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        i, j = (int(v) for v in np.argwhere(~finite)[0])
        raise InvalidInput(
            f"instances[{i}][{j}] is {array[i, j]}; values must be finite numbers.",
            instance=i,
            expected_width=model.input_width,
        )
    outside = (array < model.value_min) | (array > model.value_max)
    if outside.any():
        i, j = (int(v) for v in np.argwhere(outside)[0])
        raise InvalidInput(
            f"instances[{i}][{j}] is {array[i, j]:g}, outside the model's value range "
            f"[{model.value_min:g}, {model.value_max:g}].",
            instance=i,
            expected_width=model.input_width,
            value_min=model.value_min,
            value_max=model.value_max,
        )


def _check_batch_size(count: int, *, max_batch: int, width: int) -> None:
    if count == 0:
        raise InvalidInput(f"instances is empty; send at least one instance of {width} numbers.", expected_width=width)
    if count > max_batch:
        raise BatchTooLarge(
            f"Batch of {count} instances exceeds the maximum of {max_batch} per request.", max_batch=max_batch
        )


def _validate_array(array: np.ndarray, *, model: ServedModel, max_batch: int, dtype: str = "float32") -> np.ndarray:
    width = model.input_width
    if array.ndim != 2:
        raise InvalidInput(
            f"instances must be a 2-D array of shape [batch, {width}]; got shape {list(array.shape)}.",
            expected_width=width,
        )
    _check_batch_size(array.shape[0], max_batch=max_batch, width=width)
    if array.shape[1] != width:
        raise InvalidInput(
            f"instances[0] has {array.shape[1]} values; expected {width}.", instance=0, expected_width=width
        )
    if array.dtype.kind not in "iuf":
        raise InvalidInput(f"instances must be numbers; got an array of {array.dtype}.", expected_width=width)
    _check_values(array, model=model)
    return np.ascontiguousarray(array, dtype=dtype)


def _is_flat_float(spec: TensorSpec) -> bool:
    """The classic signature (one float ``[batch, width]`` input): the fast, vectorised path."""
    return spec.dtype in ("float32", "float64") and len(spec.shape) == 2


def instances_validate(*, model: ServedModel, instances: object, max_batch: int) -> np.ndarray:
    """Check a batch for a one-input model and return it as a contiguous array of the input's type.

    ``instances`` is a list of instances (for a ``[batch, width]`` input each
    a list of ``input_width`` numbers, as parsed from JSON; for other shapes
    nested lists of the instance's shape; or objects keyed by the input name)
    or a numpy array (batch jobs).  Every value must fit the input's element
    type (booleans are not numbers, integers must be integral) and, for
    numbers, be finite and within the model's declared range; there must be 1
    to ``max_batch`` instances.  Errors are ``InvalidInput`` naming the
    instance (0-based) and what was expected, or ``BatchTooLarge``.  The
    checks are vectorised: Python only walks the rows, and the values once
    more in C to see their types.
    """
    feeds = inputs_validate(model=model, instances=instances, max_batch=max_batch)
    if len(feeds) != 1:
        raise InvalidInput(f"Model {model.ref} takes {len(feeds)} inputs; validate them with inputs_validate.")
    return next(iter(feeds.values()))


def _flat_validate(*, model: ServedModel, spec: TensorSpec, instances: object, max_batch: int) -> np.ndarray:
    width = model.input_width
    if isinstance(instances, np.ndarray):
        return _validate_array(instances, model=model, max_batch=max_batch, dtype=spec.dtype)
    if not isinstance(instances, list | tuple):
        raise InvalidInput(
            f"instances must be a list of instances, each a list of {width} numbers; got {type(instances).__name__}.",
            expected_width=width,
        )
    _check_batch_size(len(instances), max_batch=max_batch, width=width)
    for i, row in enumerate(instances):
        if not isinstance(row, list | tuple | np.ndarray):
            raise InvalidInput(
                f"instances[{i}] is {type(row).__name__}, not a list of {width} numbers.",
                instance=i,
                expected_width=width,
            )
        if len(row) != width:
            raise InvalidInput(
                f"instances[{i}] has {len(row)} values; expected {width}.", instance=i, expected_width=width
            )
    kinds = set(map(type, itertools.chain.from_iterable(instances)))
    if not kinds <= _PLAIN_NUMBERS and not all(
        issubclass(kind, numbers.Real) and not issubclass(kind, bool | np.bool_) for kind in kinds
    ):
        raise _first_bad_value(instances, width=width)
    try:
        array = np.asarray(instances, dtype=np.float64)
    except (OverflowError, ValueError, TypeError):
        # Integers beyond float range; anything else was caught above.
        raise _first_bad_value(instances, width=width) from None
    _check_values(array, model=model)
    return array.astype(spec.dtype)


def inputs_validate(*, model: ServedModel, instances: object, max_batch: int) -> dict[str, np.ndarray]:
    """Check a batch against the model's signature; return one contiguous array per input, by name.

    ``instances`` is a list of instances (each an object keyed by input name,
    or, for a one-input model, the input's values as nested lists), a numpy
    array (one-input models) or a mapping of input name to array (the Open
    Inference Protocol and batch jobs).  Missing and unknown inputs, a wrong
    shape, a value of the wrong type, a non-finite value or one outside the
    declared range are each an ``InvalidInput`` naming what is wrong.
    """
    specs = model.inputs
    names = [spec.name for spec in specs]
    if isinstance(instances, Mapping) and instances and all(isinstance(v, np.ndarray) for v in instances.values()):
        return _feeds_validate(model=model, feeds=instances, max_batch=max_batch)
    if len(specs) == 1 and not (
        isinstance(instances, list | tuple) and instances and all(isinstance(row, dict) for row in instances)
    ):
        (spec,) = specs
        if _is_flat_float(spec):
            return {spec.name: _flat_validate(model=model, spec=spec, instances=instances, max_batch=max_batch)}
        if isinstance(instances, np.ndarray):
            return {spec.name: _array_validate(model=model, spec=spec, array=instances, max_batch=max_batch)}
    if not isinstance(instances, list | tuple) or isinstance(instances, Mapping):
        raise InvalidInput(
            f"instances must be a list of instances (objects keyed by {', '.join(map(repr, names))}); "
            f"got {type(instances).__name__}."
        )
    _check_batch_size(len(instances), max_batch=max_batch, width=model.input_width)
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for i, row in enumerate(instances):
        if isinstance(row, dict):
            missing = [name for name in names if name not in row]
            if missing:
                raise InvalidInput(
                    f"instances[{i}] lacks input(s) {', '.join(map(repr, missing))}; this model takes "
                    f"{', '.join(spec.describe() for spec in specs)}.",
                    instance=i,
                )
            extra = sorted(str(key) for key in row if key not in columns)
            if extra:
                raise InvalidInput(
                    f"instances[{i}] has unknown input(s) {', '.join(map(repr, extra))[:200]}; this model takes "
                    f"{', '.join(map(repr, names))}.",
                    instance=i,
                )
            for name in names:
                columns[name].append(row[name])
        elif len(specs) == 1:
            columns[names[0]].append(row)
        else:
            raise InvalidInput(
                f"instances[{i}] is {type(row).__name__}; this model takes {len(specs)} inputs, so each instance "
                f"is an object keyed by {', '.join(map(repr, names))}.",
                instance=i,
            )
    return {spec.name: _json_values(model=model, spec=spec, values=columns[spec.name]) for spec in specs}


def _instance_shape_error(spec: TensorSpec, values: list[Any]) -> InvalidInput:
    expected = list(spec.instance_shape)
    for i, value in enumerate(values):
        try:
            shape = list(np.asarray(value, dtype=object).shape)
        except ValueError:
            shape = None
        if shape != expected:
            got = "is not evenly nested" if shape is None else f"has shape {shape}"
            return InvalidInput(
                f"instances[{i}] for input {spec.name!r} {got}; expected shape {expected}.",
                instance=i,
                expected_shape=expected,
            )
    return InvalidInput(f"The instances for input {spec.name!r} must each have shape {expected}.")


def _json_values(*, model: ServedModel, spec: TensorSpec, values: list[Any]) -> np.ndarray:
    """One input's values as parsed from JSON, checked against its type and shape."""
    expected = (len(values), *spec.instance_shape)
    try:
        leaves = np.array(values, dtype=object)
    except ValueError:
        raise _instance_shape_error(spec, values) from None
    if leaves.shape != expected:
        raise _instance_shape_error(spec, values)
    flat = leaves.ravel().tolist()
    kinds = set(map(type, flat))
    if spec.dtype == "bool":
        if not kinds <= {bool}:
            raise _type_error(spec, flat, "true or false")
        return np.ascontiguousarray(leaves.astype(np.bool_))
    if spec.dtype.startswith(("int", "uint")):
        if not kinds <= {int}:
            raise _type_error(spec, flat, "an integer")
        try:
            array = leaves.astype(np.int64)
        except OverflowError:
            raise InvalidInput(f"Input {spec.name!r} holds an integer beyond the {spec.dtype} range.") from None
    else:
        if not kinds <= _PLAIN_NUMBERS:
            raise _type_error(spec, flat, "a number")
        try:
            array = leaves.astype(np.float64)
        except OverflowError:
            raise InvalidInput(f"Input {spec.name!r} holds an integer beyond the floating-point range.") from None
    return _values_check(model=model, spec=spec, array=array)


def _type_error(spec: TensorSpec, flat: list[Any], wanted: str) -> InvalidInput:
    allowed = {"true or false": {bool}, "an integer": {int}, "a number": {int, float}}[wanted]
    index = next(i for i, value in enumerate(flat) if type(value) not in allowed)
    instance = index // max(1, spec.instance_size)
    return InvalidInput(
        f"instances[{instance}] for input {spec.name!r} holds {_describe(flat[index])} "
        f"({type(flat[index]).__name__}); {spec.dtype} values must each be {wanted}.",
        instance=instance,
    )


def _values_check(*, model: ServedModel, spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    """Finite, within the element type and the declared range; returned as the input's type."""
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            index = np.argwhere(~finite)[0]
            raise InvalidInput(
                f"instances[{int(index[0])}] for input {spec.name!r} holds {array[tuple(index)]}; "
                "values must be finite numbers.",
                instance=int(index[0]),
            )
    if array.dtype.kind in "iu" and spec.dtype != "bool":
        info = np.iinfo(np.dtype(spec.dtype))
        outside = (array < info.min) | (array > info.max)
        if outside.any():
            index = np.argwhere(outside)[0]
            raise InvalidInput(
                f"instances[{int(index[0])}] for input {spec.name!r} holds {array[tuple(index)]}, "
                f"beyond the {spec.dtype} range [{info.min}, {info.max}].",
                instance=int(index[0]),
            )
    if spec.dtype != "bool":
        outside = (array < model.value_min) | (array > model.value_max)
        if outside.any():
            index = np.argwhere(outside)[0]
            raise InvalidInput(
                f"instances[{int(index[0])}] for input {spec.name!r} holds {array[tuple(index)]:g}, outside the "
                f"model's value range [{model.value_min:g}, {model.value_max:g}].",
                instance=int(index[0]),
                value_min=model.value_min,
                value_max=model.value_max,
            )
    return np.ascontiguousarray(array, dtype=spec.dtype)


def _array_validate(*, model: ServedModel, spec: TensorSpec, array: np.ndarray, max_batch: int) -> np.ndarray:
    """One input as a numpy array (v2 tensors, job uploads): shape, a compatible type, values."""
    expected = list(spec.instance_shape)
    if array.ndim != len(spec.shape) or list(array.shape[1:]) != expected:
        raise InvalidInput(
            f"Input {spec.name!r} has shape {list(array.shape)}; expected [batch, {', '.join(map(str, expected))}]"
            if expected
            else f"Input {spec.name!r} has shape {list(array.shape)}; expected [batch].",
            expected_shape=[-1, *expected],
        )
    _check_batch_size(array.shape[0], max_batch=max_batch, width=model.input_width)
    kind = array.dtype.kind
    if spec.dtype == "bool":
        if kind != "b":
            raise InvalidInput(f"Input {spec.name!r} is bool; got {array.dtype} values.")
        return np.ascontiguousarray(array, dtype=np.bool_)
    if spec.dtype.startswith(("int", "uint")) and kind not in "iu":
        raise InvalidInput(f"Input {spec.name!r} is {spec.dtype}; got {array.dtype} values.")
    if kind not in "iuf":
        raise InvalidInput(f"Input {spec.name!r} is {spec.dtype}; got {array.dtype} values.")
    return _values_check(model=model, spec=spec, array=array)


def _feeds_validate(*, model: ServedModel, feeds: Mapping[str, Any], max_batch: int) -> dict[str, np.ndarray]:
    names = [spec.name for spec in model.inputs]
    missing = [name for name in names if name not in feeds]
    extra = sorted(str(name) for name in feeds if name not in names)
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"missing input(s) {', '.join(map(repr, missing))}")
        if extra:
            problems.append(f"unknown input(s) {', '.join(map(repr, extra))[:200]}")
        raise InvalidInput(f"{'; '.join(problems).capitalize()}; this model takes {', '.join(map(repr, names))}.")
    out: dict[str, np.ndarray] = {}
    for spec in model.inputs:
        array = feeds[spec.name]
        if not isinstance(array, np.ndarray):
            raise InvalidInput(f"Input {spec.name!r} must be a tensor.")
        if _is_flat_float(spec):
            out[spec.name] = _validate_array(array, model=model, max_batch=max_batch, dtype=spec.dtype)
        else:
            out[spec.name] = _array_validate(model=model, spec=spec, array=array, max_batch=max_batch)
    sizes = {array.shape[0] for array in out.values()}
    if len(sizes) != 1:
        raise InvalidInput(f"The inputs disagree on the batch size: {sorted(sizes)}.")
    return out


def model_predict(*, model: ServedModel, batch: np.ndarray | Mapping[str, np.ndarray]) -> Prediction:
    """Run a validated batch; a runtime failure becomes ``ModelUnavailable`` (logged), never a 500.

    ``batch`` is one array (one-input models) or one array per input name.
    """
    feeds = dict(batch) if isinstance(batch, Mapping) else {model.inputs[0].name: batch}
    try:
        outputs = model.run_all(feeds)
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        logger.error("inference failed", extra={"model": model.ref, "error": str(exc)[:300]})
        raise ModelUnavailable(f"Model {model.ref} failed to run this batch.") from exc
    kind = model.output_kind
    base = {"model_name": model.name, "model_version": model.version, "kind": kind, "outputs": outputs}
    if kind not in OutputKind.CLASSIFIERS:
        values = outputs[model.output_name] if kind == OutputKind.REGRESSION else None
        return Prediction(labels=[], top_probabilities=[], probabilities=None, values=values, **base)
    probabilities = outputs[model.output_name]
    if kind == OutputKind.LOGITS:
        probabilities = softmax(probabilities)
    indices = probabilities.argmax(axis=1)
    top = probabilities[np.arange(len(indices)), indices]
    labels = model.labels
    return Prediction(
        labels=[labels[i] for i in indices.tolist()],
        top_probabilities=top.tolist(),
        probabilities=probabilities,
        **base,
    )


def instances_predict(
    *, name: str, instances: object, version: int | None = None, max_batch: int | None = None
) -> Prediction:
    """Resolve the served model, validate, predict: the whole runtime API in one call (no governance)."""
    model = model_serving_get(name=name, version=version)
    limit = settings.INFERENCE_MAX_BATCH if max_batch is None else max_batch
    feeds = inputs_validate(model=model, instances=instances, max_batch=limit)
    return model_predict(model=model, batch=feeds)
