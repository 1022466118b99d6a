"""Reference profiles: what a model version's held-out data looked like, as counts only.

Pure numpy, no Django.  A profile is computed once, at training (the held-out
set) or at registration (a reference data set the operator supplies), and
stored with the version (``ModelVersion.reference_profile``).  It holds, per
input feature, the inner edges of a quantile histogram and the reference
counts in those bins; the distribution of predicted labels (classifiers) or
of predicted values (regression); and the distribution of the top-class
confidence.  Live statistics (``monitoring.live``) count requests into the
very same bins, so drift is measured bin against bin, and neither side ever
keeps an input.

Binning rule, shared by profile and live counts: a value's bin is the number
of inner edges it is greater than or equal to (``0..K``), so equal edges
(a constant or discrete feature) simply leave empty bins on both sides.  A
slot after the last bin counts non-finite values, which never reach a bin.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

PROFILE_FORMAT = "maas-reference-profile/1"
#: Bins per feature (quantile deciles): 9 inner edges.
REFERENCE_BINS = 10
#: Wider inputs (images beyond 32x32) are profiled on predictions and confidence only: the
#: per-request cost grows with the width, and the request path must stay in microseconds.
MAX_PROFILED_FEATURES = 1024
#: Fixed confidence bins: [0, .1), [.1, .2) ... [.9, 1].
CONFIDENCE_EDGES: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 10))
MIN_REFERENCE_INSTANCES = 20


class ProfileError(ValueError):
    """Reference data that cannot give a profile (too few rows, wrong shape, non-finite values)."""


def features_matrix(feeds: Mapping[str, np.ndarray] | np.ndarray) -> np.ndarray:
    """Every input of a batch flattened per instance and concatenated in input order, as float64."""
    arrays = [feeds] if isinstance(feeds, np.ndarray) else list(feeds.values())
    count = int(arrays[0].shape[0])
    parts = [np.asarray(a).reshape(count, -1) for a in arrays]
    matrix = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    return matrix.astype(np.float64, copy=False)


def bin_indices(values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """Bin of each value of ``values`` [n, F] against per-feature ``inner_edges`` [F, K]; non-finite: K + 1.

    Vectorised: one comparison of the batch against every edge, no loop per feature.
    """
    index = (values[:, :, None] >= inner_edges[None, :, :]).sum(axis=2)
    finite = np.isfinite(values)
    if not finite.all():
        index[~finite] = inner_edges.shape[1] + 1
    return index


def histogram_counts(values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """Counts [F, K + 2] (the last column: non-finite values) of ``values`` [n, F]."""
    features, slots = inner_edges.shape[0], inner_edges.shape[1] + 2
    flat = bin_indices(values, inner_edges) + np.arange(features) * slots
    return np.bincount(flat.ravel(), minlength=features * slots).reshape(features, slots)


def quantile_edges(values: np.ndarray, bins: int = REFERENCE_BINS) -> np.ndarray:
    """Inner edges [F, bins - 1] at the reference quantiles of each feature of ``values`` [n, F]."""
    quantiles = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    return np.ascontiguousarray(np.quantile(values, quantiles, axis=0).T)


def confidence_slots(top: np.ndarray) -> np.ndarray:
    """Tenth of each top-class confidence: ``floor(10 * p)`` in 0..9 (1.0 falls in the last tenth).

    The same arithmetic for profile and live counts, so a value on a boundary lands alike on both sides.
    """
    slots = np.multiply(top, 10.0, dtype=np.float64).astype(np.intp)
    return np.minimum(slots, len(CONFIDENCE_EDGES), out=slots)


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def reference_profile_build(
    *,
    features: np.ndarray,
    kind: str,
    labels: Sequence[Any] = (),
    probabilities: np.ndarray | None = None,
    values: np.ndarray | None = None,
    true_labels: np.ndarray | None = None,
    source: str,
) -> dict[str, Any]:
    """The stored profile of a reference set (see the module docstring); raises :class:`ProfileError`.

    ``features`` is [n, F] (:func:`features_matrix`); ``probabilities`` [n,
    classes] for classifiers, ``values`` [n] or [n, k] for regression (first
    column profiled); ``true_labels`` optional label indices of the reference set.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < MIN_REFERENCE_INSTANCES:
        raise ProfileError(
            f"a reference set needs at least {MIN_REFERENCE_INSTANCES} instances; got {features.shape[0]}"
        )
    if not np.isfinite(features).all():
        raise ProfileError("the reference set holds non-finite values")
    count, width = features.shape
    profile: dict[str, Any] = {"format": PROFILE_FORMAT, "source": source[:300], "instances": int(count)}
    if width <= MAX_PROFILED_FEATURES:
        edges = quantile_edges(features)
        profile["features"] = {
            "count": int(width),
            "inner_edges": edges.tolist(),
            "counts": histogram_counts(features, edges)[:, :-1].tolist(),
            "mean": np.round(features.mean(axis=0), 6).tolist(),
        }
    else:
        profile["features"] = None
    if probabilities is not None:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        indices = probabilities.argmax(axis=1)
        top = probabilities[np.arange(count), indices]
        profile["predictions"] = {
            "kind": "labels",
            "labels": list(labels),
            "counts": np.bincount(indices, minlength=len(labels)).tolist(),
        }
        profile["confidence"] = {
            "inner_edges": list(CONFIDENCE_EDGES),
            "counts": np.bincount(confidence_slots(top), minlength=len(CONFIDENCE_EDGES) + 1).tolist(),
            "mean": round(float(top.mean()), 6),
        }
    elif values is not None:
        column = np.asarray(values, dtype=np.float64).reshape(count, -1)[:, :1]
        if not np.isfinite(column).all():
            raise ProfileError("the model predicts non-finite values on the reference set")
        edges = quantile_edges(column)
        profile["predictions"] = {
            "kind": "values",
            "inner_edges": edges[0].tolist(),
            "counts": histogram_counts(column, edges)[0, :-1].tolist(),
            "mean": round(float(column.mean()), 6),
        }
        profile["confidence"] = None
    else:
        profile["predictions"] = None
        profile["confidence"] = None
    if true_labels is not None and len(labels):
        profile["true_labels"] = {
            "labels": list(labels),
            "counts": np.bincount(np.asarray(true_labels, dtype=np.int64), minlength=len(labels)).tolist(),
        }
    profile["digest"] = _digest(
        {
            "features": (profile["features"] or {}).get("inner_edges"),
            "predictions": (profile["predictions"] or {}).get("inner_edges"),
            "labels": len(labels),
        }
    )
    return profile


def reference_profile_summary(profile: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a model card shows of a profile: source, size, label shares, mean confidence; ``None`` without one."""
    if not profile:
        return None
    summary: dict[str, Any] = {"source": profile.get("source", ""), "instances": profile.get("instances", 0)}
    features = profile.get("features")
    summary["features_profiled"] = features["count"] if features else 0
    summary["bins_per_feature"] = REFERENCE_BINS if features else 0
    predictions = profile.get("predictions") or {}
    if predictions.get("kind") == "labels":
        total = max(1, sum(predictions["counts"]))
        summary["predicted_label_shares"] = {
            str(label): round(n / total, 4)
            for label, n in zip(predictions["labels"], predictions["counts"], strict=True)
        }
    elif predictions.get("kind") == "values":
        summary["predicted_value_mean"] = predictions.get("mean")
    confidence = profile.get("confidence") or {}
    if confidence:
        summary["mean_top_confidence"] = confidence.get("mean")
    summary["digest"] = profile.get("digest", "")
    return summary
