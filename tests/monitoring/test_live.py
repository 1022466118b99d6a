"""Live statistics and drift measures, pure numpy: bins agree with the profile, hostile values stay counted."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from inference.profile import ProfileError, features_matrix, reference_profile_build
from monitoring.live import CONFIDENCE_SLOTS, LiveBins, LiveStats, batch_counts
from monitoring.measures import bonferroni_min, chi_square_p, psi


def _probabilities(rng: np.random.Generator, n: int, classes: int = 10) -> np.ndarray:
    z = rng.normal(size=(n, classes)) * 3
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 17, size=(400, 64)).astype(np.float32)
    p = _probabilities(rng, 400)
    profile = reference_profile_build(
        features=x, kind="probabilities", labels=list(range(10)), probabilities=p, source="test"
    )
    return x, p, profile, LiveBins.from_profile(profile, kind="probabilities", n_labels=10)


def test_live_counts_of_the_reference_set_equal_the_profile(reference):
    x, p, profile, bins = reference
    counts = batch_counts(bins=bins, features=x, probabilities=p)
    stats = LiveStats(window_seconds=300)
    stats.add_batch(name="m", version=1, bins=bins, batch=counts, now=1000.0)
    ((_, window),) = stats.drain()
    record = window.as_record()
    features = np.asarray(record["feature_counts"]).reshape(64, bins.feature_slots)
    assert features[:, :-1].tolist() == profile["features"]["counts"]
    assert features[:, -1].sum() == 0 and record["nonfinite"] == 0
    assert record["prediction_counts"] == profile["predictions"]["counts"]
    assert record["confidence_counts"][:-1] == profile["confidence"]["counts"]
    assert record["instances"] == 400 and record["profile_digest"] == profile["digest"]


def test_nan_inf_and_huge_values_are_counted_apart_and_never_shift_other_features(reference):
    _, _, _, bins = reference
    x = np.full((4, 64), 8.0)
    x[0, 0], x[1, 0], x[2, 1], x[3, 2] = np.nan, np.inf, 1e300, -1e300
    p = np.full((4, 10), 0.1)
    p[0, 0] = np.nan
    counts = batch_counts(bins=bins, features=x, probabilities=p)
    assert counts.instances == 4 and counts.nonfinite == 2
    features = counts.counts[: bins.joint_offset].reshape(64, bins.feature_slots)
    assert (features.sum(axis=1) == 4).all()  # every value of every feature lands in exactly one slot
    assert features[0, -1] == 2  # NaN and +inf: the non-finite slot of feature 0 only
    assert features[1, -2] == 1 and features[2, 0] == 1  # huge values: the outermost bins of their own feature
    joint = counts.counts[bins.joint_offset :].reshape(10, CONFIDENCE_SLOTS)
    assert joint[:, -1].sum() == 1 and joint.sum() == 4


def test_without_a_reference_profile_only_outputs_and_instances_are_counted():
    bins = LiveBins.from_profile(None, kind="probabilities", n_labels=3)
    assert bins.feature_count == 0 and bins.digest == ""
    p = np.asarray([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1]])
    counts = batch_counts(bins=bins, features=np.asarray([[1.0, np.nan], [2.0, 3.0]]), probabilities=p)
    assert counts.instances == 2 and counts.nonfinite == 1
    stats = LiveStats()
    stats.add_batch(name="m", version=1, bins=bins, batch=counts, now=0.0)
    ((_, window),) = stats.drain()
    record = window.as_record()
    assert record["feature_counts"] == [] and record["prediction_counts"] == [1, 1, 0]
    assert record["confidence_counts"][9] == 1 and record["confidence_counts"][7] == 1


def test_regression_values_use_the_reference_value_bins():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 3))
    values = x @ np.asarray([[1.0], [2.0], [3.0]])
    profile = reference_profile_build(features=x, kind="regression", values=values, source="t")
    bins = LiveBins.from_profile(profile, kind="regression", n_labels=0)
    counts = batch_counts(bins=bins, features=x, values=values)
    stats = LiveStats()
    stats.add_batch(name="r", version=1, bins=bins, batch=counts, now=0.0)
    ((_, window),) = stats.drain()
    assert window.as_record()["prediction_counts"][:-1] == profile["predictions"]["counts"]


def test_profile_refuses_too_few_or_non_finite_rows():
    with pytest.raises(ProfileError, match="at least"):
        reference_profile_build(features=np.zeros((3, 2)), kind="tensor", source="t")
    bad = np.zeros((50, 2))
    bad[3, 1] = np.inf
    with pytest.raises(ProfileError, match="non-finite"):
        reference_profile_build(features=bad, kind="tensor", source="t")


def test_several_inputs_are_concatenated_per_instance():
    matrix = features_matrix({"a": np.ones((2, 2, 2), dtype=np.uint8), "b": np.zeros((2, 3), dtype=bool)})
    assert matrix.shape == (2, 7) and matrix.dtype == np.float64


def test_windows_drain_by_time_and_failed_flushes_come_back(reference):
    _, _, _, bins = reference
    stats = LiveStats(window_seconds=60)
    stats.add_outcome(name="m", version=1, bins=bins, status=200, denied=False, now=10.0)
    stats.add_outcome(name="m", version=1, bins=bins, status=403, denied=True, now=70.0)
    stats.add_outcome(name="m", version=1, bins=bins, status=503, denied=False, now=75.0)
    (closed,) = stats.drain(closed_before=60)
    assert closed[0][2] == 0 and closed[1].requests == 1
    stats.put_back(*closed)
    assert stats.pending() == 2
    windows = dict((key[2], counts) for key, counts in stats.drain())
    assert (windows[60].requests, windows[60].denials, windows[60].server_errors) == (2, 1, 1)


def test_threads_adding_at_once_lose_no_count(reference):
    x, p, _, bins = reference
    stats = LiveStats()
    counts = batch_counts(bins=bins, features=x[:2], probabilities=p[:2], review_flags=1)

    def work():
        for _ in range(500):
            stats.add_batch(name="m", version=1, bins=bins, batch=counts, now=5.0)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ((_, window),) = stats.drain()
    assert window.instances == 4000 and window.review_flags == 2000
    assert sum(window.as_record()["prediction_counts"]) == 4000


def test_psi_and_chi_square_tell_a_shift_from_noise():
    reference = np.asarray([[100, 100, 100, 100], [100, 100, 100, 100]])
    live = np.asarray([[26, 24, 25, 25], [0, 0, 0, 100]])
    values = psi(reference, live)
    assert values[0] < 0.01 and values[1] > 1.0
    p = chi_square_p(reference, live)
    assert p[0] > 0.5 and p[1] < 1e-10
    assert np.isnan(psi(reference, np.zeros((2, 4))))[0]
    assert chi_square_p(np.asarray([[5, 0]]), np.asarray([[7, 0]]))[0] == 1.0  # one used bin: nothing to test
    assert bonferroni_min(np.asarray([0.01, 0.5])) == 0.02 and bonferroni_min(np.asarray([])) == 1.0


def test_one_instance_at_a_time_counts_exactly_like_a_batch(reference):
    x, p, _, bins = reference
    x, p = x[:50].astype(np.float64), p[:50].copy()
    x[3, 5], p[7, 2], p[8] = np.nan, np.inf, 1.0  # hostile rows take the same slots on both paths
    single, batched = LiveStats(), LiveStats()
    for i in range(50):
        one = batch_counts(bins=bins, features=x[i : i + 1], probabilities=p[i : i + 1])
        assert one.counts is None and one.instances == 1  # the bincount-free path
        single.add_batch(name="m", version=1, bins=bins, batch=one, now=0.0)
    batched.add_batch(
        name="m", version=1, bins=bins, batch=batch_counts(bins=bins, features=x, probabilities=p), now=0.0
    )
    ((_, a),) = single.drain()
    ((_, b),) = batched.drain()
    assert a.as_record() == b.as_record() and a.nonfinite == 1
