"""Per-process live statistics: counts added in the request path, never inputs.

Pure numpy and threading, no Django, so the request path pays only array
arithmetic.  Each served batch adds, for its model version and the current
window (``floor(now / window) * window``):

* per feature, counts in the reference profile's bins (``inference.profile``:
  a value's bin is the number of inner edges it reaches; a last slot counts
  non-finite values, which a validated request never has, but a batch job or
  a future path might);
* predicted labels (classifiers) or predicted values in the reference bins
  (regression); the top-class confidence in fixed tenths;
* how many instances were flagged for human review;

and every governed outcome on a known model adds one request and, by class,
a client error, a policy denial or a server error.  One lock guards the
in-memory counts; the binning itself runs outside it.  :meth:`LiveStats.drain`
hands the counts to the flusher (``monitoring.services.live_stats``), which
merges them into the database from outside the request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.profile import CONFIDENCE_EDGES

_CONFIDENCE = np.asarray(CONFIDENCE_EDGES)
#: Confidence slots: ten tenths and one for a non-finite probability.
CONFIDENCE_SLOTS = len(CONFIDENCE_EDGES) + 2


@dataclass(frozen=True)
class LiveBins:
    """The bins live counts use for one model version (from its reference profile, or none)."""

    digest: str
    kind: str
    n_labels: int
    #: [F, K] inner edges per feature, or None without a profile of the features.
    feature_edges: np.ndarray | None = None
    #: Regression: [1, K] inner edges of the predicted values.
    value_edges: np.ndarray | None = None

    @property
    def feature_slots(self) -> int:
        """Slots per feature: K + 1 bins and one for non-finite values."""
        return 0 if self.feature_edges is None else self.feature_edges.shape[1] + 2

    @property
    def feature_count(self) -> int:
        """How many features are counted (0 without a reference profile)."""
        return 0 if self.feature_edges is None else int(self.feature_edges.shape[0])

    @property
    def prediction_slots(self) -> int:
        """Labels of a classifier, value bins (+ non-finite) of a regression, else none."""
        if self.value_edges is not None:
            return self.value_edges.shape[1] + 2
        return self.n_labels

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any] | None, *, kind: str, n_labels: int) -> LiveBins:
        """The bins of a stored reference profile; without one only labels and confidence are counted."""
        if not profile:
            return cls(digest="", kind=kind, n_labels=n_labels)
        features = profile.get("features")
        predictions = profile.get("predictions") or {}
        feature_edges = None
        if features:
            feature_edges = np.ascontiguousarray(np.asarray(features["inner_edges"], dtype=np.float64))
        value_edges = None
        if predictions.get("kind") == "values":
            value_edges = np.asarray([predictions["inner_edges"]], dtype=np.float64)
        return cls(
            digest=str(profile.get("digest", "")),
            kind=kind,
            n_labels=n_labels,
            feature_edges=feature_edges,
            value_edges=value_edges,
        )


def _slot_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Flat counts [F * (K + 2)] of ``values`` [n, F] in per-feature ``edges`` [F, K] (see module docstring)."""
    features, inner = edges.shape
    slots = inner + 2
    # One broadcast comparison of the batch against every edge: no Python loop per feature.
    index = (values[:, :, None] >= edges).sum(axis=2)
    finite = np.isfinite(values)
    if not finite.all():
        index[~finite] = inner + 1
    index += np.arange(0, features * slots, slots)
    return np.bincount(index.ravel(), minlength=features * slots)


class WindowCounts:
    """The counts of one model version in one window (numpy arrays and integers)."""

    __slots__ = (
        "bins",
        "client_errors",
        "confidence",
        "denials",
        "features",
        "instances",
        "nonfinite",
        "predictions",
        "requests",
        "review_flags",
        "server_errors",
    )

    def __init__(self, bins: LiveBins):
        self.bins = bins
        self.requests = self.instances = self.client_errors = self.denials = self.server_errors = 0
        self.review_flags = self.nonfinite = 0
        self.features = np.zeros(bins.feature_count * bins.feature_slots, dtype=np.int64)
        self.predictions = np.zeros(bins.prediction_slots, dtype=np.int64)
        self.confidence = np.zeros(CONFIDENCE_SLOTS, dtype=np.int64)

    def merge(self, other: WindowCounts) -> None:
        """Add ``other`` (same bins) into these counts (a failed flush is put back this way)."""
        for name in ("requests", "instances", "client_errors", "denials", "server_errors", "review_flags", "nonfinite"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.features += other.features
        self.predictions += other.predictions
        self.confidence += other.confidence

    def as_record(self) -> dict[str, Any]:
        """Plain integers and lists, as the database row stores them."""
        return {
            "requests": int(self.requests),
            "instances": int(self.instances),
            "client_errors": int(self.client_errors),
            "denials": int(self.denials),
            "server_errors": int(self.server_errors),
            "review_flags": int(self.review_flags),
            "nonfinite": int(self.nonfinite),
            "feature_counts": self.features.tolist(),
            "prediction_counts": self.predictions.tolist(),
            "confidence_counts": self.confidence.tolist(),
            "feature_slots": self.bins.feature_slots,
            "profile_digest": self.bins.digest,
        }


@dataclass(frozen=True)
class BatchCounts:
    """One batch reduced to counts, ready to add under the lock."""

    instances: int
    features: np.ndarray | None
    predictions: np.ndarray | None
    confidence: np.ndarray | None
    review_flags: int
    nonfinite: int


def batch_counts(
    *,
    bins: LiveBins,
    features: np.ndarray | None,
    probabilities: np.ndarray | None = None,
    values: np.ndarray | None = None,
    review_flags: int = 0,
) -> BatchCounts:
    """Reduce one batch (features [n, F], the model's outputs) to counts in ``bins``; keeps nothing else."""
    count = 0
    feature_counts = None
    nonfinite = 0
    if features is not None:
        count = int(features.shape[0])
        if bins.feature_edges is not None and features.shape[1] == bins.feature_count:
            feature_counts = _slot_counts(features, bins.feature_edges)
            nonfinite = int(feature_counts[bins.feature_slots - 1 :: bins.feature_slots].sum())
        elif features.dtype.kind == "f":
            nonfinite = int(np.count_nonzero(~np.isfinite(features)))
    predictions = confidence = None
    if probabilities is not None and bins.n_labels and probabilities.shape[1:] == (bins.n_labels,):
        count = count or int(probabilities.shape[0])
        predictions = np.bincount(probabilities.argmax(axis=1), minlength=bins.n_labels)
        top = probabilities.max(axis=1)
        slot = np.searchsorted(_CONFIDENCE, top, side="right")
        slot[~np.isfinite(top)] = CONFIDENCE_SLOTS - 1
        confidence = np.bincount(slot, minlength=CONFIDENCE_SLOTS)
    elif values is not None and bins.value_edges is not None:
        column = np.asarray(values, dtype=np.float64).reshape(len(values), -1)[:, :1]
        count = count or int(column.shape[0])
        predictions = _slot_counts(column, bins.value_edges)
    return BatchCounts(count, feature_counts, predictions, confidence, int(review_flags), nonfinite)


WindowKey = tuple[str, int, int, str]  # model name, version, window start (epoch seconds), bins digest


class LiveStats:
    """Every window's counts of this process, keyed by model version and window start."""

    def __init__(self, *, window_seconds: int = 300):
        self.window_seconds = int(window_seconds)
        self._lock = threading.Lock()
        self._windows: dict[WindowKey, WindowCounts] = {}

    def window_start(self, now: float | None = None) -> int:
        """The start (epoch seconds) of the window holding ``now``."""
        t = time.time() if now is None else now
        return int(t // self.window_seconds) * self.window_seconds

    def _counts(self, name: str, version: int, bins: LiveBins, now: float | None) -> WindowCounts:
        # Called under the lock.
        key = (name, version, self.window_start(now), bins.digest)
        counts = self._windows.get(key)
        if counts is None:
            counts = self._windows[key] = WindowCounts(bins)
        return counts

    def add_batch(
        self, *, name: str, version: int, bins: LiveBins, batch: BatchCounts, now: float | None = None
    ) -> None:
        """Add one reduced batch to the current window of ``name@version``."""
        with self._lock:
            counts = self._counts(name, version, bins, now)
            counts.instances += batch.instances
            counts.review_flags += batch.review_flags
            counts.nonfinite += batch.nonfinite
            if batch.features is not None and len(batch.features) == len(counts.features):
                counts.features += batch.features
            if batch.predictions is not None and len(batch.predictions) == len(counts.predictions):
                counts.predictions += batch.predictions
            if batch.confidence is not None:
                counts.confidence += batch.confidence

    def add_outcome(
        self, *, name: str, version: int, bins: LiveBins, status: int, denied: bool, now: float | None = None
    ) -> None:
        """Count one governed request's outcome: a request, and its class of failure if any."""
        with self._lock:
            counts = self._counts(name, version, bins, now)
            counts.requests += 1
            if denied:
                counts.denials += 1
            elif status >= 500:
                counts.server_errors += 1
            elif status >= 400:
                counts.client_errors += 1

    def drain(self, *, closed_before: int | None = None) -> list[tuple[WindowKey, WindowCounts]]:
        """Take the windows starting before ``closed_before`` (all when ``None``) out of the process."""
        with self._lock:
            keys = [k for k in self._windows if closed_before is None or k[2] < closed_before]
            return [(key, self._windows.pop(key)) for key in keys]

    def put_back(self, key: WindowKey, counts: WindowCounts) -> None:
        """Return counts a flush could not write, so the next flush carries them."""
        with self._lock:
            current = self._windows.get(key)
            if current is None:
                self._windows[key] = counts
            else:
                current.merge(counts)

    def pending(self) -> int:
        """How many windows wait in this process (tests, metrics)."""
        with self._lock:
            return len(self._windows)

    def clear(self) -> None:
        """Forget everything (a forked child must not flush its parent's counts twice)."""
        with self._lock:
            self._windows.clear()
