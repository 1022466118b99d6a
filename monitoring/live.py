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

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.profile import CONFIDENCE_EDGES, confidence_slots

#: Confidence slots: ten tenths and one for a non-finite probability.
CONFIDENCE_SLOTS = len(CONFIDENCE_EDGES) + 2
_NONFINITE_CONFIDENCE = CONFIDENCE_SLOTS - 1


@dataclass(frozen=True)
class LiveBins:
    """The bins live counts use for one model version (from its reference profile, or none).

    Every count of a batch lands in one flat vector, laid out as: the
    features' slots (``feature_slots`` per feature: K + 1 bins and one for
    non-finite values), then predicted label x confidence tenth (classifiers),
    then the predicted value's slots (regression).  One ``np.bincount`` per
    batch fills it.

    Features are binned with one ``np.searchsorted`` over all of them at
    once: each feature's values are clipped to just outside its edges (which
    keeps their bin) and shifted by ``key_offsets[j]``, so feature ``j``'s
    keys and edges live in their own disjoint interval of one sorted array.
    """

    digest: str
    kind: str
    n_labels: int
    feature_count: int = 0
    feature_slots: int = 0
    flat_edges: np.ndarray | None = None
    key_offsets: np.ndarray | None = None
    slot_shift: np.ndarray | None = None
    nonfinite_slots: np.ndarray | None = None
    low: float = 0.0
    high: float = 0.0
    #: Regression: [1, K] inner edges of the predicted values.
    value_edges: np.ndarray | None = None

    @property
    def joint_offset(self) -> int:
        """Where label x confidence counts start in the flat vector."""
        return self.feature_count * self.feature_slots

    @property
    def value_offset(self) -> int:
        """Where predicted-value counts start in the flat vector."""
        return self.joint_offset + self.n_labels * CONFIDENCE_SLOTS

    @property
    def value_slots(self) -> int:
        """Slots of the predicted value (K + 1 bins and non-finite), 0 unless a regression profile."""
        return 0 if self.value_edges is None else self.value_edges.shape[1] + 2

    @property
    def total_slots(self) -> int:
        """Length of the flat count vector."""
        return self.value_offset + self.value_slots

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any] | None, *, kind: str, n_labels: int) -> LiveBins:
        """The bins of a stored reference profile; without one only labels and confidence are counted."""
        if not profile:
            return cls(digest="", kind=kind, n_labels=n_labels)
        features = profile.get("features")
        predictions = profile.get("predictions") or {}
        value_edges = None
        if predictions.get("kind") == "values":
            value_edges = np.asarray([predictions["inner_edges"]], dtype=np.float64)
        extra: dict[str, Any] = {}
        if features:
            edges = np.asarray(features["inner_edges"], dtype=np.float64)
            count, inner = edges.shape
            low, high = float(edges.min()) - 1.0, float(edges.max()) + 1.0
            offsets = np.arange(count, dtype=np.float64) * (high - low + 1.0)
            slots = inner + 2
            extra = {
                "feature_count": count,
                "feature_slots": slots,
                "flat_edges": np.ascontiguousarray((edges + offsets[:, None]).ravel()),
                "key_offsets": offsets,
                # searchsorted answers j * K + bin; the flat vector wants j * (K + 2) + bin.
                "slot_shift": np.arange(count, dtype=np.intp) * 2,
                "nonfinite_slots": np.arange(count, dtype=np.intp) * slots + inner + 1,
                "low": low,
                "high": high,
            }
        return cls(
            digest=str(profile.get("digest", "")),
            kind=kind,
            n_labels=n_labels if predictions.get("kind") != "values" else 0,
            value_edges=value_edges,
            **extra,
        )


class WindowCounts:
    """The counts of one model version in one window: scalars and the flat vector of :class:`LiveBins`."""

    __slots__ = (
        "bins",
        "client_errors",
        "counts",
        "denials",
        "instances",
        "nonfinite",
        "requests",
        "review_flags",
        "server_errors",
    )

    def __init__(self, bins: LiveBins):
        self.bins = bins
        self.requests = self.instances = self.client_errors = self.denials = self.server_errors = 0
        self.review_flags = self.nonfinite = 0
        self.counts = np.zeros(bins.total_slots, dtype=np.int64)

    def merge(self, other: WindowCounts) -> None:
        """Add ``other`` (same bins) into these counts (a failed flush is put back this way)."""
        for name in ("requests", "instances", "client_errors", "denials", "server_errors", "review_flags", "nonfinite"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.counts += other.counts

    def as_record(self) -> dict[str, Any]:
        """Plain integers and lists, as the database row stores them (label and confidence as marginals)."""
        bins = self.bins
        joint = self.counts[bins.joint_offset : bins.value_offset].reshape(bins.n_labels, CONFIDENCE_SLOTS)
        if bins.value_slots:
            predictions = self.counts[bins.value_offset :]
            confidence = np.zeros(0, dtype=np.int64)
        else:
            predictions = joint.sum(axis=1)
            confidence = joint.sum(axis=0) if bins.n_labels else np.zeros(0, dtype=np.int64)
        return {
            "requests": int(self.requests),
            "instances": int(self.instances),
            "client_errors": int(self.client_errors),
            "denials": int(self.denials),
            "server_errors": int(self.server_errors),
            "review_flags": int(self.review_flags),
            "nonfinite": int(self.nonfinite),
            "feature_counts": self.counts[: bins.joint_offset].tolist(),
            "prediction_counts": predictions.tolist(),
            "confidence_counts": confidence.tolist(),
            "feature_slots": bins.feature_slots,
            "profile_digest": bins.digest,
        }


@dataclass(frozen=True)
class BatchCounts:
    """One batch reduced to counts, ready to add under the lock.

    A batch of one (the common synchronous request) skips the ``bincount``:
    ``index`` then holds distinct slots (one per feature) and ``extra`` the
    label x confidence slot, each to be incremented by one.
    """

    instances: int
    counts: np.ndarray | None
    review_flags: int
    nonfinite: int
    index: np.ndarray | None = None
    extra: tuple[int, ...] = ()


def _feature_index(features: np.ndarray, bins: LiveBins) -> tuple[np.ndarray, int]:
    """Flat slot of every value of ``features`` [n, F], and how many were non-finite."""
    # One sum tells whether anything is NaN or infinite (huge values may overflow it: then the slow path).
    clean = math.isfinite(float(features.sum()))
    keys = features.clip(bins.low, bins.high) + bins.key_offsets
    index = np.searchsorted(bins.flat_edges, keys, side="right")
    index += bins.slot_shift
    if clean:
        return index.ravel(), 0
    finite = np.isfinite(features)
    index = np.where(finite, index, bins.nonfinite_slots)
    return index.ravel(), int(finite.size - np.count_nonzero(finite))


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
    parts: list[np.ndarray] = []
    nonfinite = 0
    if features is not None:
        count = int(features.shape[0])
        if bins.flat_edges is not None and features.ndim == 2 and features.shape[1] == bins.feature_count:
            index, nonfinite = _feature_index(features, bins)
            parts.append(index)
        elif features.dtype.kind == "f" and not math.isfinite(float(features.sum())):
            nonfinite = int(np.count_nonzero(~np.isfinite(features)))
    if (
        len(parts) < 2
        and probabilities is not None
        and bins.n_labels
        and probabilities.shape == (1, bins.n_labels)
        and count <= 1
    ):
        # One instance: the label and its confidence tenth as Python numbers (same arithmetic as
        # ``confidence_slots``), and the feature slots incremented in place, without a bincount.
        label = int(probabilities[0].argmax())
        top = float(probabilities[0, label])
        tenth = min(max(int(top * 10.0), 0), len(CONFIDENCE_EDGES)) if math.isfinite(top) else _NONFINITE_CONFIDENCE
        joint = bins.joint_offset + label * CONFIDENCE_SLOTS + tenth
        return BatchCounts(1, None, int(review_flags), nonfinite, parts[0] if parts else None, (joint,))
    if probabilities is not None and bins.n_labels and probabilities.shape[1:] == (bins.n_labels,):
        count = count or int(probabilities.shape[0])
        labels = probabilities.argmax(axis=1)
        top = probabilities.max(axis=1)
        if math.isfinite(float(top.sum())):
            slot = confidence_slots(top)
        else:  # a NaN probability has no tenth: its own slot (and no NaN-to-integer cast)
            finite = np.isfinite(top)
            slot = confidence_slots(np.where(finite, top, 0.0))
            slot[~finite] = _NONFINITE_CONFIDENCE
        parts.append(labels * CONFIDENCE_SLOTS + slot + bins.joint_offset)
    elif values is not None and bins.value_edges is not None:
        column = np.asarray(values, dtype=np.float64).reshape(len(values), -1)[:, :1]
        count = count or int(column.shape[0])
        slot = (column >= bins.value_edges).sum(axis=1)
        slot[~np.isfinite(column[:, 0])] = bins.value_slots - 1
        parts.append(slot + bins.value_offset)
    if not parts:
        return BatchCounts(count, None, int(review_flags), nonfinite)
    index = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return BatchCounts(count, np.bincount(index, minlength=bins.total_slots), int(review_flags), nonfinite)


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
            if batch.counts is not None:
                counts.counts += batch.counts
            if batch.index is not None:
                counts.counts[batch.index] += 1  # distinct slots: one per feature
            for slot in batch.extra:
                counts.counts[slot] += 1

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
