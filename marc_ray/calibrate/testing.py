"""Family-wise error control over a threshold grid: fixed sequence, Bonferroni, Holm.

Each grid threshold ``t`` carries the null hypothesis "the disagreement rate among items with
confidence >= t exceeds alpha". Rejecting it certifies ``t``. The three procedures control the
probability of certifying *any* bad threshold at ``delta``:

fixed_sequence
    Scan from the strictest threshold down; test each at level ``delta``; stop at the first
    failure. The chosen threshold is the last one that passed. No multiplicity price, but
    one early failure ends the scan (Jung et al. 2025; Bauer 1991).
bonferroni
    Test every threshold at ``delta / G`` (G = grid size); the chosen threshold is the lowest
    that passed (every passing one is certified simultaneously).
holm
    Bonferroni–Holm step-down on the exact binomial p-values: at least as many thresholds
    pass as with Bonferroni, never fewer.

Minimum-n rule: thresholds accepting fewer than ``min_n`` calibration items are not tested
(they cannot pass anyway below :func:`~marc_ray.calibrate.bounds.min_n_to_pass`). Because the
number accepted only grows as the threshold falls, these are always the leading thresholds,
so for the fixed sequence the rule sets where the scan starts. **If the first tested threshold
fails, nothing is accepted** (index -1, threshold +inf); there is never a fallback to accepting.

Every function here is vectorised over leading batch axes, so the validity study selects
thresholds for a thousand repetitions in one call.

References
----------
.. [1] P. Bauer, "Multiple testing in clinical trials", Statistics in Medicine 10(6), 1991.
.. [2] S. Holm, "A simple sequentially rejective multiple test procedure", Scand. J. Stat., 1979.
.. [3] A. N. Angelopoulos, S. Bates, E. J. Candès, M. I. Jordan, L. Lei, "Learn then Test:
   Calibrating Predictive Algorithms to Achieve Risk Control", 2021.
.. [4] J. Jung, F. Brahman, Y. Choi, "Trust or Escalate", ICLR 2025.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .config import CalibrateConfig
from .bounds import _p_value, clopper_pearson_upper, max_disagreements, min_n_to_pass

__all__ = ["PROCEDURES", "Procedure", "Selection", "select_thresholds", "resolve_min_n",
           "procedure_level"]

Procedure = Literal["fixed_sequence", "bonferroni", "holm"]
PROCEDURES: dict[str, str] = {
    "fixed_sequence": "scan from the strictest threshold, each tested at delta, stop at the first failure",
    "bonferroni": "every threshold tested at delta / grid size; the lowest passing one is used",
    "holm": "Bonferroni-Holm step-down on exact binomial p-values; the lowest rejected one is used",
}


def check_procedure(procedure: str) -> str:
    if procedure not in PROCEDURES:
        raise ValueError(f"procedure must be one of {sorted(PROCEDURES)}, got {procedure!r}")
    return procedure


def procedure_level(procedure: str, delta: float, n_thresholds: int) -> float:
    """The per-threshold test level: ``delta`` (fixed sequence) or ``delta / G`` (the others).

    For Holm this is the level of its first, strictest step, used for the default min-n.
    """
    check_procedure(procedure)
    return delta if procedure == "fixed_sequence" else delta / n_thresholds


def resolve_min_n(min_n, alpha: float, delta: float, procedure: str, n_thresholds: int) -> int:
    """``"auto"`` -> the smallest n at which a threshold can pass; an int is used as given."""
    if isinstance(min_n, str):
        if min_n != "auto":
            raise ValueError(f"min_n must be 'auto' or a positive integer, got {min_n!r}")
        return min_n_to_pass(alpha, procedure_level(procedure, delta, n_thresholds))
    if isinstance(min_n, bool) or not isinstance(min_n, (int, np.integer)) or min_n < 1:
        raise ValueError(f"min_n must be 'auto' or a positive integer, got {min_n!r}")
    return int(min_n)


@dataclass
class Selection:
    """What a procedure decided, per batch (shapes ``(...)`` and ``(..., G)``).

    Attributes
    ----------
    index : ndarray of int, shape (...)
        Index of the chosen threshold in the descending grid; -1 when nothing is accepted.
    tested : ndarray of bool, shape (..., G)
        Thresholds accepting at least ``min_n`` items (the others are skipped).
    passed : ndarray of bool, shape (..., G)
        Thresholds certified by the procedure (for the fixed sequence: the passing run).
    level : ndarray of float, shape (..., G)
        The level each threshold was tested at (Holm: the step at which it was compared).
    min_n : int
    """

    index: np.ndarray
    tested: np.ndarray
    passed: np.ndarray
    level: np.ndarray
    min_n: int


def select_thresholds(n, k, alpha: float, delta: float, procedure: str = CalibrateConfig.procedure,
                      min_n=CalibrateConfig.min_n) -> Selection:
    """Apply a family-wise procedure to per-threshold counts on a descending grid.

    Parameters
    ----------
    n, k : array-like of int, shape (..., G)
        Accepted items and disagreements at each threshold, thresholds descending (so ``n``
        is non-decreasing along the last axis), e.g. from :func:`counts_at_thresholds`.
    alpha : float in (0, 1)
        Tolerated disagreement rate among accepted items.
    delta : float in (0, 1)
        Family-wise error level.
    procedure : {"fixed_sequence", "bonferroni", "holm"}, default=CalibrateConfig.procedure
    min_n : "auto" or int, default=CalibrateConfig.min_n
        See the module notes and :func:`resolve_min_n`.

    Returns
    -------
    Selection
    """
    check_procedure(procedure)
    n = np.asarray(n, dtype=np.int64)
    k = np.asarray(k, dtype=np.int64)
    n_thresholds = n.shape[-1]
    level_value = procedure_level(procedure, delta, n_thresholds)
    resolved_min_n = resolve_min_n(min_n, alpha, delta, procedure, n_thresholds)
    tested = n >= resolved_min_n
    level = np.full(n.shape, level_value, dtype=float)
    positions = np.arange(n_thresholds)

    if procedure in ("fixed_sequence", "bonferroni"):
        if n.ndim == 1:  # one calibration: G exact p-values are cheapest
            ok = tested & (_p_value(k, n, float(alpha)) <= level_value)
        else:  # many: one table of k_max per distinct n, then integer comparisons
            ok = tested & (k <= max_disagreements(n, alpha, level_value))
        if procedure == "bonferroni":
            passed = ok
            index = np.where(ok.any(axis=-1), n_thresholds - 1 - np.argmax(ok[..., ::-1], axis=-1), -1)
        else:
            # tested is a suffix of the grid (n grows as thresholds fall): the scan starts at
            # the first tested threshold and runs until the first tested one that fails
            start = np.where(tested.any(axis=-1), np.argmax(tested, axis=-1), n_thresholds)
            failed = tested & ~ok
            first_failure = np.where(failed.any(axis=-1), np.argmax(failed, axis=-1), n_thresholds)
            index = np.where(first_failure > start, first_failure - 1, -1)
            passed = (positions >= start[..., None]) & (positions < first_failure[..., None])
        return Selection(index=np.asarray(index), tested=tested, passed=passed, level=level,
                         min_n=resolved_min_n)

    # Holm: compare the j-th smallest p-value with delta / (G - j); stop at the first failure
    p_value = np.where(tested, _p_value(k, n, float(alpha)), 1.0)
    order = np.argsort(p_value, axis=-1, kind="stable")
    sorted_p = np.take_along_axis(p_value, order, axis=-1)
    step_levels = delta / (n_thresholds - positions)
    step_ok = sorted_p <= step_levels
    n_rejected = np.where(step_ok.all(axis=-1), n_thresholds, np.argmin(step_ok, axis=-1))
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(positions, order.shape), axis=-1)
    passed = tested & (rank < n_rejected[..., None])
    level = step_levels[rank]
    index = np.where(passed.any(axis=-1), n_thresholds - 1 - np.argmax(passed[..., ::-1], axis=-1), -1)
    return Selection(index=np.asarray(index), tested=tested, passed=passed, level=level,
                     min_n=resolved_min_n)


class ThresholdRecords(dict):
    """Per-threshold table (lists of length G) whose ``"upper_bound"`` column is computed on
    first access: one inverse incomplete beta per threshold is the one costly step of a
    calibration on a million items, and most callers only need the chosen threshold's bound.
    """

    def __missing__(self, key):
        if key != "upper_bound":
            raise KeyError(key)
        bounds = clopper_pearson_upper(np.asarray(self["k"]), np.asarray(self["n"]),
                                       np.asarray(self["level"]))
        self["upper_bound"] = np.atleast_1d(bounds).tolist()
        return self["upper_bound"]

    def complete(self) -> dict:
        """A plain dict with every column, the bounds included (for JSON)."""
        self["upper_bound"]  # noqa: B018  (fills the column)
        return dict(self)


def threshold_records(grid, n, k, alpha: float, selection: Selection) -> ThresholdRecords:
    """The per-threshold table of one calibration.

    Parameters
    ----------
    grid : array of float, shape (G,)
    n, k : array of int, shape (G,)
    alpha : float
    selection : Selection for a single (unbatched) calibration

    Returns
    -------
    ThresholdRecords
        Columns threshold, n, k, p_value (exact binomial), level (each threshold's test
        level), tested, passed, and upper_bound (Clopper–Pearson at that level, on access).
    """
    n = np.asarray(n)
    k = np.asarray(k)
    return ThresholdRecords({
        "threshold": np.asarray(grid, dtype=float).tolist(),
        "n": n.tolist(),
        "k": k.tolist(),
        "p_value": _p_value(k, n, float(alpha)).tolist(),
        "level": selection.level.tolist(),
        "tested": selection.tested.tolist(),
        "passed": selection.passed.tolist(),
    })
