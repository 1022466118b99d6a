"""Training data: scikit-learn's bundled digits or a Keras MNIST ``.npz``, flattened, with a fingerprint.

No TensorFlow here.  The digits are split stratified with a fixed seed; an
``.npz`` file brings its own held-out set.  The SHA-256 fingerprint of the
arrays goes into every version's lineage.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.training.errors import DatasetError, TrainingError

DEFAULT_SEED = 42
DEFAULT_TEST_SIZE = 0.2


@dataclass
class Dataset:
    """Train and held-out arrays (flattened, float32) with the facts recorded as lineage."""

    source: str
    split: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    value_min: float
    value_max: float
    labels: list[int]
    fingerprint: str

    @property
    def width(self) -> int:
        """Number of input values per instance (64 for 8x8 digits, 784 for MNIST)."""
        return int(self.x_train.shape[1])


def data_fingerprint(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over each array's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _encode_labels(y: np.ndarray, labels: list[int]) -> np.ndarray:
    return np.searchsorted(np.asarray(labels), y).astype(np.int64)


def load_dataset(
    data_path: str | None = None, *, seed: int = DEFAULT_SEED, test_size: float = DEFAULT_TEST_SIZE
) -> Dataset:
    """scikit-learn's bundled digits (stratified split), or a Keras MNIST ``.npz`` (its own test split)."""
    if data_path is None:
        try:
            from sklearn.datasets import load_digits
            from sklearn.model_selection import train_test_split
        except ImportError as exc:
            raise TrainingError("The digits data set needs scikit-learn (the 'train' extra).") from exc
        digits = load_digits()
        x_all = np.asarray(digits.data)
        y_all = np.asarray(digits.target)
        x_train, x_test, y_train, y_test = train_test_split(
            x_all, y_all, test_size=test_size, stratify=y_all, random_state=seed
        )
        labels = sorted(int(v) for v in np.unique(y_all))
        return Dataset(
            source="sklearn.datasets.load_digits (1,797 images, 8x8, values 0-16)",
            split=f"stratified {1 - test_size:.0%}/{test_size:.0%} train/held-out, random_state={seed}",
            x_train=x_train.astype(np.float32),
            y_train=_encode_labels(y_train, labels),
            x_test=x_test.astype(np.float32),
            y_test=_encode_labels(y_test, labels),
            value_min=0.0,
            value_max=16.0,
            labels=labels,
            fingerprint=data_fingerprint({"data": x_all, "target": y_all}),
        )
    return _load_npz(Path(data_path))


def _load_npz(path: Path) -> Dataset:
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise DatasetError(
            f"{path}: missing arrays {missing}; the Keras MNIST format has x_train, y_train, x_test, y_test"
        )
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    y_train, y_test = arrays["y_train"].reshape(-1), arrays["y_test"].reshape(-1)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise DatasetError(f"{path}: x and y arrays have different lengths")
    if x_train.ndim < 2 or x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(f"{path}: x_train {x_train.shape} and x_test {x_test.shape} are not images of one shape")
    if not (np.issubdtype(y_train.dtype, np.integer) and np.issubdtype(y_test.dtype, np.integer)):
        raise DatasetError(f"{path}: labels must be integers")
    x_train = x_train.reshape(len(x_train), -1)
    x_test = x_test.reshape(len(x_test), -1)
    if x_train.dtype == np.uint8:
        value_min, value_max = 0.0, 255.0
    else:
        value_min = float(np.floor(min(x_train.min(), x_test.min())))
        value_max = float(np.ceil(max(x_train.max(), x_test.max())))
    if value_max <= value_min:
        raise DatasetError(f"{path}: the pixel values are constant")
    labels = sorted(int(v) for v in np.unique(y_train))
    unknown = set(np.unique(y_test).tolist()) - set(labels)
    if unknown:
        raise DatasetError(f"{path}: y_test has labels {sorted(unknown)} that never occur in y_train")
    return Dataset(
        source=f"npz file {path.name} ({len(x_train) + len(x_test)} images of {x_train.shape[1]} values)",
        split="the file's own x_test/y_test as the held-out set",
        x_train=x_train.astype(np.float32),
        y_train=_encode_labels(y_train, labels),
        x_test=x_test.astype(np.float32),
        y_test=_encode_labels(y_test, labels),
        value_min=value_min,
        value_max=value_max,
        labels=labels,
        fingerprint=data_fingerprint(arrays),
    )
