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
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings

from core.errors import InvalidInput
from inference.errors import BatchTooLarge, ModelUnavailable
from inference.runtime import ServedModel
from inference.selectors import model_serving_get

logger = logging.getLogger("inference.serving")

_PLAIN_NUMBERS = frozenset({int, float})


@dataclass(frozen=True)
class Prediction:
    """One batch's outputs: the predicted label and its probability per instance, and all probabilities."""

    model_name: str
    model_version: int
    labels: list[Any]
    top_probabilities: list[float]
    probabilities: np.ndarray


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


def _validate_array(array: np.ndarray, *, model: ServedModel, max_batch: int) -> np.ndarray:
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
    return np.ascontiguousarray(array, dtype=np.float32)


def instances_validate(*, model: ServedModel, instances: object, max_batch: int) -> np.ndarray:
    """Check a batch and return it as a contiguous float32 array of shape ``(n, input_width)``.

    ``instances`` is a list of instances (each a list of ``input_width``
    numbers, as parsed from JSON) or a 2-D numpy array (batch jobs).  Every
    value must be a finite number (booleans are not numbers) within the
    model's declared range, and there must be 1 to ``max_batch`` instances.
    Errors are ``InvalidInput`` naming the instance (0-based) and the expected
    width, or ``BatchTooLarge``.  The checks are vectorised: Python only walks
    the rows, and the values once more in C to see their types.
    """
    width = model.input_width
    if isinstance(instances, np.ndarray):
        return _validate_array(instances, model=model, max_batch=max_batch)
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
    return array.astype(np.float32)


def model_predict(*, model: ServedModel, batch: np.ndarray) -> Prediction:
    """Run a validated batch; a runtime failure becomes ``ModelUnavailable`` (logged), never a 500."""
    try:
        probabilities = model.run(batch)
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        logger.error("inference failed", extra={"model": model.ref, "error": str(exc)[:300]})
        raise ModelUnavailable(f"Model {model.ref} failed to run this batch.") from exc
    indices = probabilities.argmax(axis=1)
    top = probabilities[np.arange(len(indices)), indices]
    labels = model.labels
    return Prediction(
        model_name=model.name,
        model_version=model.version,
        labels=[labels[i] for i in indices.tolist()],
        top_probabilities=top.tolist(),
        probabilities=probabilities,
    )


def instances_predict(
    *, name: str, instances: object, version: int | None = None, max_batch: int | None = None
) -> Prediction:
    """Resolve the served model, validate, predict: the whole runtime API in one call (no governance)."""
    model = model_serving_get(name=name, version=version)
    limit = settings.INFERENCE_MAX_BATCH if max_batch is None else max_batch
    batch = instances_validate(model=model, instances=instances, max_batch=limit)
    return model_predict(model=model, batch=batch)
