"""Drift measures on binned counts: population stability index and a chi-square two-sample test.

Pure numpy (and ``scipy.stats.chi2`` for the p-value).  Both compare a
reference histogram with a live one over the same bins, vectorised over
features: rows are features (or the one distribution of predictions or
confidence), columns are bins.

* PSI: ``sum((a - e) * ln(a / e))`` over bins of the proportions, each
  proportion floored at ``PSI_FLOOR`` so an empty bin does not make it
  infinite.  Usual reading: < 0.1 stable, 0.1-0.25 a shift, > 0.25 a major one.
* Chi-square test of homogeneity on the 2 x bins table of counts (bins empty
  on both sides dropped); the p-value is the chance of a difference at least
  this large if both came from one distribution.  Over many features the
  smallest p-value is Bonferroni-adjusted (multiplied by the number of
  features tested, capped at 1).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import chi2

PSI_FLOOR = 1e-4


def psi(reference: np.ndarray, live: np.ndarray) -> np.ndarray:
    """PSI per row of two count matrices of one shape ([rows, bins]); NaN where either side is empty."""
    reference = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    live = np.atleast_2d(np.asarray(live, dtype=np.float64))
    ref_total = reference.sum(axis=1, keepdims=True)
    live_total = live.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.maximum(reference / ref_total, PSI_FLOOR)
        a = np.maximum(live / live_total, PSI_FLOOR)
        value = ((a - e) * np.log(a / e)).sum(axis=1)
    value[(ref_total[:, 0] == 0) | (live_total[:, 0] == 0)] = np.nan
    return value


def chi_square_p(reference: np.ndarray, live: np.ndarray) -> np.ndarray:
    """p-value per row of the chi-square homogeneity test; 1.0 when a row has fewer than two used bins."""
    reference = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    live = np.atleast_2d(np.asarray(live, dtype=np.float64))
    used = (reference + live) > 0
    n_ref = reference.sum(axis=1, keepdims=True)
    n_live = live.sum(axis=1, keepdims=True)
    total = n_ref + n_live
    with np.errstate(divide="ignore", invalid="ignore"):
        column = reference + live
        expected_ref = column * n_ref / total
        expected_live = column * n_live / total
        stat = np.where(
            used, (reference - expected_ref) ** 2 / expected_ref + (live - expected_live) ** 2 / expected_live, 0.0
        )
    stat = np.nan_to_num(stat.sum(axis=1), nan=0.0)
    dof = used.sum(axis=1) - 1
    p = np.ones(len(stat))
    testable = (dof >= 1) & (n_ref[:, 0] > 0) & (n_live[:, 0] > 0)
    p[testable] = chi2.sf(stat[testable], dof[testable])
    return p


def bonferroni_min(p_values: np.ndarray) -> float:
    """The smallest p-value times the number of tests, capped at 1 (1.0 for no tests)."""
    if len(p_values) == 0:
        return 1.0
    return float(min(1.0, float(np.min(p_values)) * len(p_values)))
