"""Threshold grids, and counting accepted items and disagreements at every threshold.

The binomial argument behind fixed-sequence testing holds only for thresholds chosen
**before** looking at the calibration scores (``../shared/DESIGN.md``, "The mathematics,
exactly"). Two data-independent grids are offered:

* :func:`fixed_grid` — evenly spaced, from ``high`` down to ``low``;
* :func:`quantile_grid` — quantiles of scores from a **disjoint** split (e.g. training
  items), which follows the shape of the score distribution without touching the calibration
  set; it remembers the ids it came from so the calibrator can check disjointness.

Both return a :class:`ThresholdGrid`: a descending float array that also records its kind
and provenance. A plain array is accepted too, but the calibrator refuses one whose values
all occur among the calibration confidences (a grid read off the calibration scores).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from .config import CalibrateConfig

__all__ = ["ThresholdGrid", "fixed_grid", "quantile_grid", "as_grid", "check_grid_independent",
           "counts_at_thresholds", "GRID_KINDS"]

GRID_KINDS = {
    "fixed": "evenly spaced thresholds fixed in advance",
    "quantile": "quantiles of scores from a split disjoint from the calibration set",
    "user": "thresholds given by the user",
}


class ThresholdGrid(np.ndarray):
    """A descending array of thresholds that remembers where it came from.

    Attributes
    ----------
    kind : {"fixed", "quantile", "user"}
        See ``GRID_KINDS``. "fixed" and "quantile" grids are data-independent by
        construction; a "user" grid is checked against the calibration scores.
    source_ids : frozenset of str or None
        For a quantile grid, the ids of the items whose scores made it (checked against the
        calibration ids when both are known).
    """

    kind: str
    source_ids: frozenset | None

    def __new__(cls, values, kind: str = "user", source_ids: Iterable[str] | None = None):
        if kind not in GRID_KINDS:
            raise ValueError(f"grid kind must be one of {sorted(GRID_KINDS)}, got {kind!r}")
        array = np.asarray(values, dtype=float).ravel()
        if array.size == 0:
            raise ValueError("the threshold grid is empty; give at least one threshold")
        if not np.all(np.isfinite(array)):
            raise ValueError("the threshold grid holds NaN or infinite values")
        # descending and without duplicates: the fixed sequence scans from the strictest
        array = np.unique(array)[::-1].copy()
        grid = array.view(cls)
        grid.kind = kind
        grid.source_ids = None if source_ids is None else frozenset(str(i) for i in source_ids)
        return grid

    def __array_finalize__(self, obj):
        self.kind = getattr(obj, "kind", "user")
        self.source_ids = getattr(obj, "source_ids", None)

    def describe(self) -> dict:
        """A JSON-ready description for certificates (kind, size, range, the values)."""
        values = np.asarray(self, dtype=float)
        return {"kind": self.kind, "description": GRID_KINDS[self.kind], "n_points": int(values.size),
                "high": float(values[0]), "low": float(values[-1]), "values": values.tolist()}


def fixed_grid(n_points: int = CalibrateConfig.n_grid, low: float = 0.0, high: float = 1.0) -> ThresholdGrid:
    """Evenly spaced thresholds from ``high`` down to ``low`` (both included).

    Parameters
    ----------
    n_points : int, default=CalibrateConfig.n_grid
        Number of thresholds (>= 1). More points give a finer threshold at the price of a
        stricter Bonferroni / Holm level (delta / n_points); fixed-sequence pays nothing.
    low, high : float, default=0.0, 1.0
        Range of the confidence measure. A max-probability confidence lives in [0.5, 1].

    Returns
    -------
    grid : ThresholdGrid, shape (n_points,), descending, kind "fixed"
    """
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 1:
        raise ValueError(f"n_points must be a positive integer, got {n_points!r}")
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"need finite low < high, got low={low!r}, high={high!r}")
    return ThresholdGrid(np.linspace(high, low, int(n_points)), kind="fixed")


def quantile_grid(scores_from_a_disjoint_split, n_points: int = CalibrateConfig.n_grid,
                  ids: Iterable[str] | None = None) -> ThresholdGrid:
    """Thresholds at evenly spaced quantiles of scores from a split disjoint from calibration.

    Parameters
    ----------
    scores_from_a_disjoint_split : array-like of float, shape (n_scores,)
        Confidences of items that are **not** in the calibration set (training items, or a
        held-out slice). Using the calibration scores here voids the guarantee.
    n_points : int, default=CalibrateConfig.n_grid
    ids : iterable of str, optional
        Ids of those items; when given, :class:`SelectiveCalibrator` refuses to calibrate on
        any of them (pass the calibration ids to ``calibrate(..., ids=...)``).

    Returns
    -------
    grid : ThresholdGrid, shape (<= n_points,), descending, kind "quantile"
        Duplicate quantiles (ties in the scores) are merged.
    """
    scores = np.asarray(scores_from_a_disjoint_split, dtype=float).ravel()
    if scores.size == 0:
        raise ValueError("quantile_grid needs scores from a disjoint split; got none")
    if not np.all(np.isfinite(scores)):
        raise ValueError("quantile_grid: the scores hold NaN or infinite values")
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 1:
        raise ValueError(f"n_points must be a positive integer, got {n_points!r}")
    levels = np.linspace(0.0, 1.0, int(n_points) + 2)[1:-1]  # interior quantiles only
    return ThresholdGrid(np.quantile(scores, levels, method="linear"), kind="quantile",
                         source_ids=ids)


def as_grid(grid, n_grid: int = CalibrateConfig.n_grid) -> ThresholdGrid:
    """Resolve the calibrator's ``grid`` parameter: None / "fixed" / an array / a ThresholdGrid."""
    if grid is None or (isinstance(grid, str) and grid == "fixed"):
        return fixed_grid(n_grid)
    if isinstance(grid, str):
        raise ValueError(f"grid must be None, 'fixed', an array of thresholds or a ThresholdGrid "
                         f"(see fixed_grid / quantile_grid), got {grid!r}")
    if isinstance(grid, ThresholdGrid):
        return ThresholdGrid(grid, kind=grid.kind, source_ids=grid.source_ids)
    return ThresholdGrid(grid, kind="user")


def check_grid_independent(grid: ThresholdGrid, confidence: np.ndarray,
                           ids: np.ndarray | None = None) -> None:
    """Refuse a grid that was (or looks) derived from the calibration scores.

    Raises
    ------
    ValueError
        * a quantile grid whose source ids overlap the calibration ids;
        * a user grid of two or more thresholds that all occur among the calibration
          confidences (thresholds read off the calibration scores void the binomial argument).
    """
    if grid.kind == "quantile" and grid.source_ids is not None and ids is not None:
        overlap = grid.source_ids.intersection(str(i) for i in ids)
        if overlap:
            example = sorted(overlap)[:3]
            raise ValueError(f"the quantile grid was built from {len(overlap)} calibration item(s) "
                             f"(e.g. ids {example}); build it from a disjoint split, or use "
                             "fixed_grid()")
    if grid.kind == "user" and grid.size >= 2:
        present = np.isin(np.asarray(grid, dtype=float), np.asarray(confidence, dtype=float))
        if present.all():
            raise ValueError(
                f"all {grid.size} grid thresholds occur among the calibration confidences: a grid "
                "taken from the calibration scores voids the guarantee. Use fixed_grid(), or "
                "quantile_grid(scores of a disjoint split); if this grid really was fixed in "
                "advance (e.g. rounded confidences), pass ThresholdGrid(values, kind='fixed')")


def counts_at_thresholds(confidence, agree, grid) -> tuple[np.ndarray, np.ndarray]:
    """Accepted items ``n`` and disagreements ``k`` at every threshold (``confidence >= t``).

    One set: the scores are sorted once and each threshold is a binary search (O(N log N +
    G log N)). A batch: each item is placed once in the grid and counts are accumulated from
    the top per row (one ``bincount``). Neither grows with N x G as a per-threshold loop does.

    Parameters
    ----------
    confidence : array-like of float, shape (n_items,) or (n_batches, n_items)
    agree : array-like of bool, same shape
        Whether the judge agrees with the human label on the item.
    grid : array-like of float, shape (n_thresholds,), descending

    Returns
    -------
    n, k : ndarray of int64, shape (n_thresholds,) or (n_batches, n_thresholds)
        ``n[..., j] = #{confidence >= grid[j]}``, ``k[..., j]`` the disagreements among them.
    """
    confidence = np.asarray(confidence, dtype=float)
    agree = np.asarray(agree, dtype=bool)
    if confidence.shape != agree.shape:
        raise ValueError(f"confidence {confidence.shape} and agree {agree.shape} differ in shape")
    thresholds = np.asarray(grid, dtype=float)
    n_thresholds = thresholds.size
    ascending = thresholds[::-1]
    if confidence.ndim == 1:
        # one set: sort the scores once, then each threshold is one binary search (G log N)
        accepted = confidence.size - np.searchsorted(np.sort(confidence), thresholds, side="left")
        wrong = np.sort(confidence[~agree])
        bad = wrong.size - np.searchsorted(wrong, thresholds, side="left")
        return accepted.astype(np.int64), bad.astype(np.int64)
    # position = number of thresholds <= c; the item is accepted at the top `position` ones
    position = np.searchsorted(ascending, confidence, side="right")
    batched = confidence.ndim == 2
    n_batches = confidence.shape[0] if batched else 1
    offsets = (np.arange(n_batches) * (n_thresholds + 1))[:, None] if batched else 0
    flat = (position + offsets).ravel()
    size = n_batches * (n_thresholds + 1)
    per_bin = np.bincount(flat, minlength=size).reshape(n_batches, n_thresholds + 1)
    per_bin_bad = np.bincount(flat, weights=(~agree).ravel(), minlength=size)
    per_bin_bad = per_bin_bad.reshape(n_batches, n_thresholds + 1).astype(np.int64)
    # items in bin p are accepted by ascending thresholds 0..p-1, i.e. descending index
    # j >= n_thresholds - p: a cumulative sum over bins from the top does it in one pass
    n = np.cumsum(per_bin[:, ::-1], axis=1)[:, :n_thresholds]
    k = np.cumsum(per_bin_bad[:, ::-1], axis=1)[:, :n_thresholds]
    if not batched:
        return n[0], k[0]
    return n, k
