"""Human oversight and audit summaries of a prediction, for every output kind.

Policy decides *whether* oversight applies (a ``human_oversight`` rule sets a
review threshold); the model decides *what* is doubtful:

* classifiers (``probabilities``, ``logits``): a top probability below the threshold;
* regression: a value outside the plausible range declared with the model
  (``plausible_min``/``plausible_max``, stated in its model card); a model
  without a declared range flags nothing;
* raw tensors: nothing can be judged, so nothing is flagged.

The audit record keeps what each kind means: labels and top probabilities,
values, or a checksum of each instance's outputs (never the tensors themselves).
Pure numpy; the governed pipeline and batch jobs both call it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.signature import OutputKind


@dataclass
class ReviewSummary:
    """The review flags of one batch and what the audit trail records about it."""

    kind: str
    flags: list[bool]
    labels: list[Any]
    top: list[float]
    values: np.ndarray | None
    checksums: list[str]
    plausible: tuple[float, float] | None

    def audit(self, *, detail_max: int) -> Any:
        """Per-instance detail up to ``detail_max`` instances, counts and aggregates beyond."""
        count = len(self.flags)
        if self.kind in OutputKind.CLASSIFIERS:
            if count <= detail_max:
                return [
                    {"label": label, "top_probability": round(float(p), 6), "needs_review": flag}
                    for label, p, flag in zip(self.labels, self.top, self.flags, strict=True)
                ]
            counts: dict[str, int] = {}
            for label in self.labels:
                counts[str(label)] = counts.get(str(label), 0) + 1
            return {"count": count, "labels": counts, "needs_review": sum(self.flags)}
        if self.kind == OutputKind.REGRESSION and self.values is not None:
            values = np.asarray(self.values, dtype=np.float64)
            if count <= detail_max:
                return [
                    {"value": _rounded(row), "needs_review": flag}
                    for row, flag in zip(values.tolist(), self.flags, strict=True)
                ]
            return {
                "count": count,
                "min": round(float(values.min()), 6),
                "max": round(float(values.max()), 6),
                "mean": round(float(values.mean()), 6),
                "needs_review": sum(self.flags),
            }
        if count <= detail_max:
            return [{"outputs_sha256": checksum} for checksum in self.checksums]
        whole = hashlib.sha256("".join(self.checksums).encode()).hexdigest()
        return {"count": count, "outputs_sha256": whole}

    def review_items(self) -> list[tuple[Any, float]]:
        """``(label, top probability)`` of each flagged instance, as the review queue stores them.

        A regression item's label is its value (with the range it left) and its
        top probability 0: a value has no confidence to show the reviewer.
        """
        if self.kind in OutputKind.CLASSIFIERS:
            return [(label, float(p)) for label, p, flag in zip(self.labels, self.top, self.flags, strict=True) if flag]
        if self.kind == OutputKind.REGRESSION and self.values is not None and self.plausible is not None:
            low, high = self.plausible
            items = []
            for row, flag in zip(np.asarray(self.values).tolist(), self.flags, strict=True):
                if flag:
                    items.append((f"{_text(row)} outside [{low:g}, {high:g}]"[:100], 0.0))
            return items
        return []


def _rounded(row: Any) -> Any:
    return [round(float(v), 6) for v in row] if isinstance(row, list) else round(float(row), 6)


def _text(row: Any) -> str:
    return ", ".join(f"{float(v):.6g}" for v in row) if isinstance(row, list) else f"{float(row):.6g}"


def _checksums(outputs: dict[str, np.ndarray], count: int) -> list[str]:
    """SHA-256 (first 16 hex digits) of each instance's outputs, in output order."""
    arrays = [np.ascontiguousarray(array) for array in outputs.values()]
    sums = []
    for i in range(count):
        digest = hashlib.sha256()
        for array in arrays:
            digest.update(array[i].tobytes())
        sums.append(digest.hexdigest()[:16])
    return sums


def prediction_review(*, model: Any, prediction: Any, review_threshold: float | None) -> ReviewSummary:
    """Flags and audit summary of a :class:`~inference.services.serving.Prediction` of ``model``.

    ``review_threshold`` is policy's: ``None`` means no oversight applies, and nothing is flagged.
    """
    kind = prediction.kind
    plausible = None
    if model.plausible_min is not None and model.plausible_max is not None:
        plausible = (float(model.plausible_min), float(model.plausible_max))
    if kind in OutputKind.CLASSIFIERS:
        top = list(prediction.top_probabilities)
        count = len(top)
        if review_threshold is None:
            flags = [False] * count
        else:
            flags = (np.asarray(top, dtype=np.float64) < review_threshold).tolist()
        return ReviewSummary(kind, flags, list(prediction.labels), top, None, [], plausible)
    count = int(next(iter(prediction.outputs.values())).shape[0]) if prediction.outputs else 0
    if kind == OutputKind.REGRESSION and prediction.values is not None:
        values = np.asarray(prediction.values, dtype=np.float64)
        if review_threshold is None or plausible is None:
            flags = [False] * count
        else:
            rows = values.reshape(count, -1)
            flags = ((rows < plausible[0]) | (rows > plausible[1]) | ~np.isfinite(rows)).any(axis=1).tolist()
        return ReviewSummary(kind, flags, [], [], values, [], plausible)
    return ReviewSummary(kind, [False] * count, [], [], None, _checksums(prediction.outputs, count), plausible)
