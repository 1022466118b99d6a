"""Human-oversight flags and audit summaries per output kind (pure: no database)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from inference.review import prediction_review
from inference.services.serving import Prediction

pytestmark = pytest.mark.embedded


def _model(low=None, high=None):
    return SimpleNamespace(plausible_min=low, plausible_max=high)


def _regression(values):
    values = np.asarray(values, dtype=np.float32)
    return Prediction("m", 1, [], [], None, kind="regression", values=values, outputs={"value": values})


def test_regression_flags_only_when_oversight_applies_and_a_range_is_declared():
    prediction = _regression([[10.0], [200.0], [float("nan")]])
    assert prediction_review(model=_model(0, 100), prediction=prediction, review_threshold=0.6).flags == [
        False,
        True,
        True,
    ]
    # No oversight obligation from policy, or no declared range: nothing is flagged.
    assert prediction_review(model=_model(0, 100), prediction=prediction, review_threshold=None).flags == [False] * 3
    assert prediction_review(model=_model(), prediction=prediction, review_threshold=0.6).flags == [False] * 3


def test_summaries_per_kind_detail_then_aggregate():
    review = prediction_review(model=_model(0, 100), prediction=_regression([[10.0], [200.0]]), review_threshold=0.5)
    assert review.audit(detail_max=10) == [
        {"value": [10.0], "needs_review": False},
        {"value": [200.0], "needs_review": True},
    ]
    assert review.audit(detail_max=1) == {"count": 2, "min": 10.0, "max": 200.0, "mean": 105.0, "needs_review": 1}
    assert review.review_items() == [("200 outside [0, 100]", 0.0)]
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6]], np.float32)
    classifier = Prediction("m", 1, ["a", "b"], [0.9, 0.6], probabilities, outputs={"p": probabilities})
    review = prediction_review(model=_model(), prediction=classifier, review_threshold=0.7)
    assert review.flags == [False, True] and review.review_items() == [("b", pytest.approx(0.6))]
    assert review.audit(detail_max=0) == {"count": 2, "labels": {"a": 1, "b": 1}, "needs_review": 1}
    outputs = {"x": np.arange(4, dtype=np.int32).reshape(2, 2), "y": np.ones((2, 3), bool)}
    raw = Prediction("m", 1, [], [], None, kind="tensor", outputs=outputs)
    review = prediction_review(model=_model(), prediction=raw, review_threshold=0.99)
    detail = review.audit(detail_max=5)
    assert review.flags == [False, False] and len(detail) == 2 and detail[0] != detail[1]
    assert set(review.audit(detail_max=0)) == {"count", "outputs_sha256"}
