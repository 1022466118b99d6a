"""Shadow comparison: run another version on the batch just answered, summarise, never return it.

Used by the governed pipeline during a rollout: each shadow version (and, for
a request the canary answered, the stable version) runs on the same validated
batch after the answer is computed.  What is kept is a summary small enough
for the audit record: agreement with the answer (classifiers: the share of
instances with the same label; regression: the share within 0.1 % relative),
the shadow's label distribution (or value range), and its cost.  A shadow that
fails is recorded as failed; it can never fail or change the answer.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from inference.runtime import ServedModel
from inference.services.serving import Prediction, model_predict
from inference.signature import OutputKind

logger = logging.getLogger("inference.shadow")

#: Labels listed in a shadow's distribution; the rest are summed under ``"..."``.
DISTRIBUTION_MAX_LABELS = 32


def _distribution(labels: list[Any]) -> dict[str, int]:
    counts = Counter(str(label) for label in labels)
    if len(counts) <= DISTRIBUTION_MAX_LABELS:
        return dict(sorted(counts.items()))
    top = dict(sorted(counts.most_common(DISTRIBUTION_MAX_LABELS)))
    top["..."] = sum(counts.values()) - sum(top.values())
    return top


def _agreement(primary: Prediction, shadow: Prediction) -> float | None:
    if primary.kind in OutputKind.CLASSIFIERS and shadow.kind in OutputKind.CLASSIFIERS:
        if not primary.labels:
            return None
        same = sum(1 for a, b in zip(primary.labels, shadow.labels, strict=True) if a == b)
        return round(same / len(primary.labels), 6)
    if primary.values is not None and shadow.values is not None and primary.values.shape == shadow.values.shape:
        a = primary.values.reshape(len(primary.values), -1)
        b = shadow.values.reshape(len(shadow.values), -1)
        close = np.isclose(a, b, rtol=1e-3, atol=1e-6).all(axis=1)
        return round(float(close.mean()), 6) if len(close) else None
    return None


def shadow_compare(
    *, primary: Prediction, model: ServedModel, batch: np.ndarray | Mapping[str, np.ndarray], role: str
) -> dict[str, Any]:
    """Run ``model`` on ``batch`` and summarise it against ``primary`` (the answer), for the audit record."""
    started = time.perf_counter()
    summary: dict[str, Any] = {"version": model.version, "role": role}
    try:
        prediction = model_predict(model=model, batch=batch)
    except Exception as exc:  # a shadow never fails the request; its failure is the finding
        logger.warning("shadow failed", extra={"model": model.ref, "error": str(exc)[:300]})
        summary.update(error=type(exc).__name__, agreement=None)
    else:
        summary["agreement"] = _agreement(primary, prediction)
        if prediction.kind in OutputKind.CLASSIFIERS:
            summary["labels"] = _distribution(prediction.labels)
        elif prediction.values is not None and prediction.values.size:
            values = prediction.values.astype(float)
            summary["values"] = {
                "min": round(float(values.min()), 6),
                "max": round(float(values.max()), 6),
                "mean": round(float(values.mean()), 6),
            }
    summary["latency_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
    return summary
