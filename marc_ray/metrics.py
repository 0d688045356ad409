"""How well a confidence measure ranks agreement: AUROC, ranking risk, risk–coverage, ECE.

Pure, vectorised numpy/scipy functions of two arrays of shape (n_items,): a ``confidence``
and a boolean ``agree`` (the judge agrees with the human label). They describe the
confidence measure; the certified threshold itself comes from
:class:`~marc_ray.calibrate.SelectiveCalibrator`.

A leaf of the package (it imports numpy and scipy only): ``fit`` ranks its validation models with
it and ``calibrate`` reports and chooses measures with it, so neither imports the other for it.

References
----------
.. [1] R. El-Yaniv, Y. Wiener, "On the Foundations of Noise-free Selective Classification",
   JMLR 2010 (risk–coverage curve).
.. [2] Y. Geifman, R. El-Yaniv, "Bias-Reduced Uncertainty Estimation for Deep Neural
   Classifiers", ICLR 2019 (AURC).
.. [3] C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger, "On Calibration of Modern Neural
   Networks", ICML 2017 (ECE, reliability diagrams).
.. [4] MARC (Jin, Tao, Yu, Huang, ICML 2026): ranking risk RK = 1 - AUROC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["auroc", "ranking_risk", "risk_coverage_curve", "aurc", "reliability_bins",
           "ReliabilityBins", "expected_calibration_error", "selective_agreement"]


def as_confidence_and_agreement(confidence, agree) -> tuple[np.ndarray, np.ndarray]:
    """Flat float confidences and boolean agreement flags of equal length (0/1 accepted)."""
    confidence = np.asarray(confidence, dtype=float).ravel()
    agree = np.asarray(agree).ravel()
    if agree.dtype != bool:
        if not np.isin(agree, (0, 1)).all():
            raise ValueError("agree must hold booleans (or 0/1)")
        agree = agree.astype(bool)
    if confidence.shape != agree.shape:
        raise ValueError(f"confidence ({confidence.size}) and agree ({agree.size}) differ in length")
    return confidence, agree


def _inputs(confidence, agree) -> tuple[np.ndarray, np.ndarray]:
    confidence, agree = as_confidence_and_agreement(confidence, agree)
    if confidence.size == 0:
        raise ValueError("no items")
    if not np.all(np.isfinite(confidence)):
        raise ValueError("confidence holds NaN or infinite values")
    return confidence, agree


def auroc(confidence, agree) -> float:
    """Probability that a random agree item has higher confidence than a random disagree one.

    Ties count one half (the Mann–Whitney statistic over midranks).

    Parameters
    ----------
    confidence : array-like of float, shape (n_items,)
    agree : array-like of bool, shape (n_items,)

    Returns
    -------
    float
        NaN when every item agrees or every item disagrees (no pair to rank).
    """
    confidence, agree = _inputs(confidence, agree)
    n_agree = int(agree.sum())
    n_disagree = agree.size - n_agree
    if n_agree == 0 or n_disagree == 0:
        return float("nan")
    ranks = stats.rankdata(confidence)  # midranks: ties count one half
    u = ranks[agree].sum() - n_agree * (n_agree + 1) / 2.0
    return float(u / (n_agree * n_disagree))


def ranking_risk(confidence, agree) -> float:
    """MARC's ranking risk RK = P(C(disagree) > C(agree)) + P(tie)/2 = 1 - AUROC."""
    return 1.0 - auroc(confidence, agree)


def risk_coverage_curve(confidence, agree) -> tuple[np.ndarray, np.ndarray]:
    """Selective risk (disagreement rate among accepted) against coverage, at every cut.

    One point per distinct confidence value, from the highest (smallest coverage) down:
    accepting every item with confidence >= that value.

    Returns
    -------
    coverage : ndarray of float, shape (n_distinct,), increasing, ends at 1.0
    risk : ndarray of float, shape (n_distinct,)
    """
    confidence, agree = _inputs(confidence, agree)
    order = np.argsort(-confidence, kind="stable")
    sorted_confidence = confidence[order]
    disagreements = np.cumsum(~agree[order])
    # the last position of each run of equal confidences: a threshold cannot split ties
    last_of_run = np.flatnonzero(np.r_[sorted_confidence[1:] != sorted_confidence[:-1], True])
    accepted = last_of_run + 1
    return accepted / confidence.size, disagreements[last_of_run] / accepted


def aurc(confidence, agree) -> float:
    """Area under the risk–coverage curve (lower is better).

    Step integral: each cut's risk weighted by the coverage it adds; without ties this is
    the mean selective risk over the n coverage levels 1/n, ..., 1 (Geifman et al.).
    """
    coverage, risk = risk_coverage_curve(confidence, agree)
    widths = np.diff(np.r_[0.0, coverage])
    return float(np.sum(widths * risk))


@dataclass
class ReliabilityBins:
    """Equal-width confidence bins.

    Attributes
    ----------
    edges : ndarray, shape (n_bins + 1,)
    count : ndarray of int, shape (n_bins,)
    mean_confidence : ndarray, shape (n_bins,)  (NaN in empty bins)
    agreement : ndarray, shape (n_bins,)  (NaN in empty bins)
    """

    edges: np.ndarray
    count: np.ndarray
    mean_confidence: np.ndarray
    agreement: np.ndarray


def reliability_bins(confidence, agree, n_bins: int = 10, low: float = 0.0,
                     high: float = 1.0) -> ReliabilityBins:
    """Bin items by confidence and compare mean confidence with observed agreement.

    Parameters
    ----------
    confidence, agree : array-like, shape (n_items,)
    n_bins : int, default=10
    low, high : float, default=0.0, 1.0
        Bin range; values outside are clipped into the end bins.

    Returns
    -------
    ReliabilityBins
    """
    confidence, agree = _inputs(confidence, agree)
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    edges = np.linspace(low, high, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=n_bins) / count
        agreement_rate = np.bincount(index, weights=agree.astype(float), minlength=n_bins) / count
    return ReliabilityBins(edges, count, mean_confidence, agreement_rate)


def expected_calibration_error(confidence, agree, n_bins: int = 10) -> float:
    """ECE = sum over bins of (bin share) * |agreement - mean confidence| (equal-width bins)."""
    bins = reliability_bins(confidence, agree, n_bins)
    filled = bins.count > 0
    weights = bins.count[filled] / bins.count.sum()
    return float(np.sum(weights * np.abs(bins.agreement[filled] - bins.mean_confidence[filled])))


def selective_agreement(confidence, agree, threshold: float) -> tuple[float, float]:
    """Agreement among items with confidence >= threshold, and their share (coverage).

    Returns
    -------
    agreement : float
        NaN when nothing is accepted.
    coverage : float
    """
    confidence, agree = _inputs(confidence, agree)
    accepted = confidence >= threshold
    n_accepted = int(accepted.sum())
    coverage = n_accepted / confidence.size
    if n_accepted == 0:
        return float("nan"), coverage
    return float(agree[accepted].mean()), coverage
