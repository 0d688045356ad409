"""Diagnostics of the assumptions a certificate rests on, computed from plain arrays.

Three checks, each returning a small dict the renderer turns into a sentence and a table:

* :func:`monotonicity`: is agreement with humans increasing in the confidence? Fixed-sequence
  testing stays valid when it is not, but a non-monotone confidence wastes coverage (the
  failure MARC targets: the top fifth of GPT-4's confidence agreed less often than the second).
* :func:`drift`: do the deployment items' confidences look like the calibration items'? The
  guarantee assumes exchangeability; a two-sample Kolmogorov–Smirnov test on the confidence
  distributions is a cheap, assumption-free alarm (it cannot prove the absence of drift).
* :func:`calibration_size`: is the calibration set large enough for the target α and δ at all?

They live in calibrate (statistics, next to the bounds they use); the report only formats
their results. Nothing here imports ray, torch or vllm.

References
----------
Jung, Brahman, Choi. "Trust or Escalate: LLM Judges with Provable Guarantees for Human
Agreement". ICLR 2025.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from .bounds import min_n_to_pass, n_needed_at_rate
from .config import CalibrateConfig


def monotonicity(confidence: np.ndarray, agree: np.ndarray, n_bins: int = 10,
                 min_per_bin: int = 10) -> dict:
    """Binned agreement rate as a function of confidence, with its decreases counted.

    Parameters
    ----------
    confidence : ndarray of shape (n,)
    agree : ndarray of bool, shape (n,)
        Agreement of the verdict with the human label (tie policy already applied).
    n_bins : int, default=10
        Equal-count bins (confidence quantiles); fewer when there are too few items, or when
        ties merge bins (a bin never splits a tied value: :func:`tie_respecting_cuts`).
    min_per_bin : int, default=10

    Returns
    -------
    dict
        ``edges`` (n_bins + 1,), ``counts``, ``agreement``, ``mean_confidence`` (n_bins,);
        ``violations``: adjacent bin pairs where agreement drops while the mean confidence rises;
        ``significant_violations``: drops larger than 1.96 standard errors of the difference;
        ``spearman``: rank correlation of bin confidence and bin agreement.
    """
    confidence = np.asarray(confidence, dtype=float)
    agree = np.asarray(agree, dtype=bool)
    if confidence.shape != agree.shape:
        raise ValueError(f"confidence {confidence.shape} and agree {agree.shape} differ in shape")
    finite = np.isfinite(confidence)
    confidence, agree = confidence[finite], agree[finite]
    n_bins = int(max(1, min(n_bins, confidence.size // max(1, min_per_bin))))
    empty = {"edges": [], "counts": [], "agreement": [], "mean_confidence": [], "violations": 0,
             "significant_violations": 0, "violating_bins": [], "spearman": math.nan,
             "n_bins": 0}
    if confidence.size == 0:
        return empty
    # Equal-count bins by rank, cut only between distinct values: heavy ties (a confidence of
    # exactly 1.0) can neither empty a bin nor be split across bins that then share one mean.
    order = np.argsort(confidence, kind="stable")
    chunks = np.split(order, tie_respecting_cuts(confidence[order], n_bins))
    n_bins = len(chunks)
    counts = np.array([len(c) for c in chunks])
    rates = np.array([agree[c].mean() for c in chunks])
    means = np.array([confidence[c].mean() for c in chunks])
    edges = [float(confidence[chunks[0][0]])] + [float(confidence[c[-1]]) for c in chunks]
    # a drop is agreement falling while the mean confidence rises (always so between tie-free bins)
    drops = (np.diff(rates) < 0) & (np.diff(means) > 0)
    se = np.sqrt(rates * (1 - rates) / counts)
    gap_se = np.sqrt(se[:-1] ** 2 + se[1:] ** 2)
    significant = drops & ((rates[:-1] - rates[1:]) > 1.96 * np.maximum(gap_se, 1e-12))
    spearman = float(stats.spearmanr(means, rates).statistic) if n_bins > 2 else math.nan
    return {"edges": edges, "counts": counts.tolist(), "agreement": rates.tolist(),
            "mean_confidence": means.tolist(), "violations": int(drops.sum()),
            "significant_violations": int(significant.sum()),
            "violating_bins": [int(i) for i in np.flatnonzero(drops)],
            "spearman": spearman, "n_bins": n_bins}


def tie_respecting_cuts(sorted_values: np.ndarray, n_bins: int) -> np.ndarray:
    """Positions that cut sorted values into about ``n_bins`` equal-count bins, never inside a tie.

    Each equal-count cut (``i * n / n_bins``) moves to the nearest position where the value
    changes; cuts that land on the same position merge, so heavy ties give fewer, larger bins.

    Parameters
    ----------
    sorted_values : ndarray of shape (n,), ascending
    n_bins : int

    Returns
    -------
    ndarray of int, strictly increasing, each in (0, n): ``np.split`` positions.
    """
    n = sorted_values.size
    changes = np.flatnonzero(np.diff(sorted_values) > 0) + 1  # first index of each new value
    if changes.size == 0 or n_bins <= 1:
        return np.array([], dtype=np.int64)
    targets = np.arange(1, n_bins) * n / n_bins
    right = np.clip(np.searchsorted(changes, targets), 0, changes.size - 1)
    left = np.clip(right - 1, 0, changes.size - 1)
    nearest = np.where(np.abs(changes[left] - targets) <= np.abs(changes[right] - targets),
                       changes[left], changes[right])
    return np.unique(nearest)


def drift(calibration_confidence: np.ndarray, deployment_confidence: np.ndarray,
          threshold: float | None = None,
          significance: float = CalibrateConfig.drift_significance) -> dict:
    """Two-sample Kolmogorov–Smirnov test between calibration and deployment confidences.

    Parameters
    ----------
    calibration_confidence : ndarray of shape (n_cal,)
    deployment_confidence : ndarray of shape (n_dep,)
    threshold : float, optional
        λ̂; when given, the share of items above it in each sample is reported too.
    significance : float, default=CalibrateConfig.drift_significance
        The warning fires when the test's p-value is below it.

    Returns
    -------
    dict
        ``statistic``, ``p_value``, ``fired`` (bool), ``n_calibration``, ``n_deployment``,
        ``coverage_calibration`` and ``coverage_deployment`` (when ``threshold`` is given),
        and a plain-language ``message``.
    """
    cal = np.asarray(calibration_confidence, dtype=float)
    dep = np.asarray(deployment_confidence, dtype=float)
    cal, dep = cal[np.isfinite(cal)], dep[np.isfinite(dep)]
    if cal.size == 0 or dep.size == 0:
        raise ValueError("drift needs finite confidences in both samples "
                         f"(got {cal.size} calibration and {dep.size} deployment values)")
    result = stats.ks_2samp(cal, dep)
    out = {"test": "two-sample Kolmogorov-Smirnov (scipy.stats.ks_2samp)",
           "statistic": float(result.statistic), "p_value": float(result.pvalue),
           "significance": significance, "fired": bool(result.pvalue < significance),
           "n_calibration": int(cal.size), "n_deployment": int(dep.size)}
    if threshold is not None:
        out["coverage_calibration"] = float(np.mean(cal >= threshold))
        out["coverage_deployment"] = float(np.mean(dep >= threshold))
    if out["fired"]:
        out["message"] = (f"WARNING: the deployment confidences differ from the calibration "
                          f"confidences (KS statistic {out['statistic']:.3f}, p = "
                          f"{out['p_value']:.2g} < {significance}). The items may not be drawn "
                          f"from the same distribution, and the guarantee assumes they are: "
                          f"recalibrate on labelled items from the deployment distribution.")
    else:
        out["message"] = (f"No drift detected between calibration and deployment confidences "
                          f"(KS statistic {out['statistic']:.3f}, p = {out['p_value']:.2g}). "
                          f"This does not prove the distributions are the same.")
    return out


def calibration_size(n_calibration: int, alpha: float, delta: float,
                     observed_risk: float | None = None) -> dict:
    """How many calibration items the target (α, δ) needs.

    Parameters
    ----------
    n_calibration : int
        Items in the calibration set (after the tie policy).
    alpha, delta : float
    observed_risk : float, optional
        The disagreement rate of the most confident half of the calibration set (the items
        one hopes to accept; the messages name it so).

    Returns
    -------
    dict
        ``n_min_zero_errors``: the fewest accepted items that can certify α at all, even with
        no disagreement (the smallest n with 1 − δ^(1/n) <= α, the Clopper–Pearson bound at
        k = 0); ``n_needed_at_observed_risk``: the fewest accepted items whose bound is <= α
        when their disagreement rate is ``observed_risk`` (None when not given, ``inf`` when
        ``observed_risk >= alpha``); ``adequate`` and a plain ``message``.
    """
    if not (0 < alpha < 1 and 0 < delta < 1):
        raise ValueError(f"alpha and delta must lie in (0, 1), got {alpha} and {delta}")
    n_zero = min_n_to_pass(alpha, delta)
    needed: float | None = None
    if observed_risk is not None:
        needed = n_needed_at_rate(float(observed_risk), alpha, delta)
    adequate = n_calibration >= n_zero and (needed is None or n_calibration >= needed)
    parts = [f"Even with no disagreement at all, at least {n_zero} accepted calibration items "
             f"are needed to certify alpha = {alpha:g} with delta = {delta:g}."]
    if needed is not None:
        if math.isinf(needed):
            parts.append(f"The disagreement rate of the most confident half of the calibration "
                         f"set ({observed_risk:.1%}) is not below alpha, "
                         f"so no calibration set size would certify it.")
        else:
            parts.append(f"At the disagreement rate of the most confident half of the "
                         f"calibration set ({observed_risk:.1%}), about {int(needed)} accepted "
                         f"items are needed.")
    parts.append(f"The bound counts {n_calibration} calibration items (those left after the tie "
                 f"policy): "
                 + ("adequate." if adequate else "too small for this target; label more items "
                    "or relax alpha or delta."))
    return {"n_calibration": int(n_calibration), "n_min_zero_errors": n_zero,
            "n_needed_at_observed_risk": needed, "observed_risk": observed_risk,
            "adequate": bool(adequate), "message": " ".join(parts)}
