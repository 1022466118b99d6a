"""Reading a reference data set from a file: ``.npy``, ``.npz`` or ``.csv``, never pickles.

The registry profiles a version on the data it was validated on
(``inference.profile``); for a file registered without training, the operator
supplies that data here (``register_model --reference FILE``, or later
``model_reference_profile``).  Shapes and values are checked by the registry
against the version's signature.

* ``.npy``: one array, instances on the first axis;
* ``.npz``: ``x_test`` or ``x`` (optionally ``y_test``/``y``: label indices),
  the only array, or one array per input name (several inputs);
* ``.csv``: numbers only, one instance per row; a first row that is not
  numeric is taken as a header.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from inference.errors import InvalidReferenceData

MAX_REFERENCE_BYTES = 512 * 1024 * 1024


def reference_data_load(path: str | Path) -> tuple[np.ndarray | dict[str, np.ndarray], np.ndarray | None]:
    """``(instances, label indices or None)`` read from ``path``; ``InvalidReferenceData`` otherwise."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InvalidReferenceData(f"Cannot read the reference data {path}: {exc.strerror}.") from None
    if size > MAX_REFERENCE_BYTES:
        raise InvalidReferenceData(f"The reference data {path} exceeds {MAX_REFERENCE_BYTES} bytes.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False), None
        if suffix == ".npz":
            return _npz(path)
        if suffix == ".csv":
            return _csv(path), None
    except (OSError, ValueError, EOFError) as exc:
        raise InvalidReferenceData(f"The reference data {path} cannot be read: {str(exc)[:200]}.") from None
    raise InvalidReferenceData(f"Reference data must be a .npy, .npz or .csv file, not {path.name!r}.")


def _npz(path: Path) -> tuple[np.ndarray | dict[str, np.ndarray], np.ndarray | None]:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    labels = next((arrays.pop(key) for key in ("y_test", "y") if key in arrays), None)
    for key in ("x_test", "x"):
        if key in arrays:
            return arrays[key], _labels(labels)
    if not arrays:
        raise InvalidReferenceData(f"{path.name} holds no arrays.")
    if len(arrays) == 1:
        return next(iter(arrays.values())), _labels(labels)
    return arrays, _labels(labels)


def _labels(labels: np.ndarray | None) -> np.ndarray | None:
    if labels is None:
        return None
    labels = np.asarray(labels).reshape(-1)
    if labels.dtype.kind not in "iu" or (labels < 0).any():
        raise InvalidReferenceData("Reference labels (y, y_test) must be non-negative label indices.")
    return labels.astype(np.int64)


def _csv(path: Path) -> np.ndarray:
    rows: list[list[float]] = []
    with path.open(newline="") as handle:
        for number, row in enumerate(csv.reader(handle)):
            if not row:
                continue
            try:
                rows.append([float(cell) for cell in row])
            except ValueError:
                if number == 0:
                    continue  # a header
                raise InvalidReferenceData(f"{path.name} line {number + 1} is not all numbers.") from None
    if not rows:
        raise InvalidReferenceData(f"{path.name} holds no rows.")
    if len({len(row) for row in rows}) != 1:
        raise InvalidReferenceData(f"The rows of {path.name} differ in length.")
    return np.asarray(rows, dtype=np.float64)
