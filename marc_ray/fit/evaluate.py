"""Ranking quality of a confidence measure: AUROC and ranking risk RK = 1 − AUROC.

RK = P(C(s_i) < C(s_j)) for a random agreement case i and disagreement case j (ties count
one half). The calibrate stage owns these metrics (``marc_ray.calibrate.metrics``); until that
module exists this falls back to the Mann-Whitney U statistic from scipy, which is the same
quantity.
"""

from __future__ import annotations

import math

import numpy as np


def auroc(confidence: np.ndarray, agree: np.ndarray) -> float:
    """P(C_agree > C_disagree) + ½ P(tie); NaN when either class is empty.

    Parameters
    ----------
    confidence : ndarray of float, shape (n,)
    agree : ndarray of bool or {0, 1}, shape (n,)
    """
    confidence = np.asarray(confidence, dtype=float)
    agree = np.asarray(agree).astype(bool)
    if agree.all() or not agree.any():
        return math.nan
    try:
        from ..calibrate.metrics import auroc as shared_auroc
    except ImportError:
        from scipy.stats import mannwhitneyu

        u = mannwhitneyu(confidence[agree], confidence[~agree], alternative="two-sided").statistic
        return float(u / (agree.sum() * (~agree).sum()))
    return float(shared_auroc(confidence, agree))


def ranking_risk(confidence: np.ndarray, agree: np.ndarray) -> float:
    """RK = 1 − AUROC (NaN when either class is empty)."""
    return 1.0 - auroc(confidence, agree)
