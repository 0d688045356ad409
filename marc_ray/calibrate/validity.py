"""The validity study: does the guarantee hold when the calibration set is redrawn?

Over ``n_repetitions`` seeded repetitions a threshold is calibrated on a fresh calibration
set and judged: a repetition *succeeds* when the agreement on the items it accepts is at least
``1 - alpha`` (accepting nothing counts as success). The share of successes should be at
least ``1 - delta``; it is reported with an exact two-sided Clopper–Pearson interval, next to
the mean coverage (what the guarantee costs). Two designs (``../shared/DESIGN.md``):

split
    Random calibration / test splits of the labelled file; success is judged on the test
    part. Group-aware when ``groups`` is given (a group — e.g. a prompt — is never on both
    sides). Shows what a user with one test set would see; on small files test-sample noise
    alone makes it understate success.
population
    The labelled file *is* the population: calibration sets are drawn from it with
    replacement and success is judged on the whole file, so it tests the guarantee itself.

Everything is vectorised across repetitions: each item is placed in the threshold grid once,
each repetition's counts are one ``bincount`` over (repetition, grid cell), and all
repetitions go through the procedure in one call (1000 repetitions x 5000 items in well
under a second, see ``benchmarks/bench_validity.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..contracts import TIE_POLICIES, agreement
from ..contracts.options import option
from ..contracts.validation import (check_choice, check_number, check_type, fail, is_integer,
                                    is_number)
from .bounds import clopper_pearson_interval
from .calibrator import check_alpha, check_delta, verdict_mask
from .config import CalibrateConfig
from .grid import as_grid, counts_at_thresholds
from .testing import check_procedure, select_thresholds

__all__ = ["validity_study", "validity_study_from_agreement", "ValidityResult", "ValidityOptions",
           "DESIGNS",
           "calibrate_batch", "draw_calibration_sets"]

DESIGNS = {
    "split": "random calibration/test splits; success judged on the test part",
    "population": "calibration sets drawn with replacement from the file; success judged on the whole file",
}



def read_size(text: str):
    """``--calibration-size`` text: a fraction stays a float, a whole count becomes an int."""
    value = float(text)
    return int(value) if value >= 1 and value == int(value) else value


read_size.__name__ = "S"  # argparse's metavar and its "invalid S value" message

@dataclass
class ValidityOptions:
    """How ``marc-ray validity`` redraws calibration sets (the guarantee's own settings, α, δ,
    the grid and the procedure, are ``CalibrateConfig``'s)."""

    design: str = option("population", "how calibration sets are drawn and judged: one of "
                         "DESIGNS")
    repetitions: int = option(1000, "seeded repetitions, each a fresh calibration set")
    calibration_size: float | int = option(0.5, "calibration set size: a fraction in (0, 1) or a "
                                           "count", parse=read_size)
    group_column: str = option("group", "split design: keep each group on one side (used when "
                               "the file has this column)")
    random_state: int = option(0, "random seed: the same seed gives the same study")

    def validate(self, source: str = "") -> "ValidityOptions":
        check_choice("design", self.design, DESIGNS, source)
        check_number("repetitions", self.repetitions, source, low=1, integer=True)
        size = self.calibration_size
        if not (is_number(size) and 0 < size < 1 or is_integer(size) and size >= 1):
            fail("calibration_size", "a fraction in (0, 1) or a whole count >= 1", size, source)
        check_type("group_column", self.group_column, str, "a column name", source)
        check_number("random_state", self.random_state, source, integer=True)
        return self


_CHUNK_CELLS = 4_000_000  # repetitions are processed in chunks of about this many (rep, item) cells


@dataclass
class ValidityResult:
    """Outcome of a validity study.

    Attributes
    ----------
    design, procedure : str
    alpha, delta : float
    n_repetitions, n_items, calibration_size : int
    success : ndarray of bool, shape (n_repetitions,)
    threshold : ndarray of float, shape (n_repetitions,)   (inf: nothing accepted)
    coverage : ndarray of float, shape (n_repetitions,)
        Share of evaluated items accepted (test part, or the whole file).
    agreement : ndarray of float, shape (n_repetitions,)
        Agreement on the evaluated accepted items (NaN when none).
    success_rate : float
    success_interval : tuple of float
        Exact 95% two-sided Clopper–Pearson interval of the success rate.
    mean_coverage : float
    abstention_rate : float
        Share of repetitions that accepted nothing.
    """

    design: str
    procedure: str
    alpha: float
    delta: float
    n_repetitions: int
    n_items: int
    calibration_size: int
    success: np.ndarray = field(repr=False)
    threshold: np.ndarray = field(repr=False)
    coverage: np.ndarray = field(repr=False)
    agreement: np.ndarray = field(repr=False)
    success_rate: float = 0.0
    success_interval: tuple = (0.0, 1.0)
    mean_coverage: float = 0.0
    abstention_rate: float = 0.0

    def sentence(self) -> str:
        low, high = self.success_interval
        verdict = "consistent with" if high >= 1 - self.delta else "BELOW"
        return (f"In {self.n_repetitions} {self.design} repetitions the agreement on accepted items "
                f"reached {1 - self.alpha:.0%} in {self.success_rate:.1%} of them (95% interval "
                f"{low:.1%}-{high:.1%}; promised at least {1 - self.delta:.0%}: {verdict} the "
                f"guarantee), accepting {self.mean_coverage:.1%} of items on average."
                + (" The split design judges each repetition on a finite test part, whose noise "
                   "alone lowers this rate; the population design tests the guarantee itself."
                   if self.design == "split" else ""))

    def to_dict(self, repetitions: bool = False) -> dict:
        summary = {"design": self.design, "design_description": DESIGNS[self.design],
                   "procedure": self.procedure, "alpha": self.alpha, "delta": self.delta,
                   "n_repetitions": self.n_repetitions, "n_items": self.n_items,
                   "calibration_size": self.calibration_size, "success_rate": self.success_rate,
                   "success_interval_95": list(self.success_interval),
                   "mean_coverage": self.mean_coverage, "abstention_rate": self.abstention_rate,
                   "sentence": self.sentence()}
        if repetitions:
            summary["repetitions"] = {"success": self.success.tolist(),
                                      "threshold": self.threshold.tolist(),
                                      "coverage": self.coverage.tolist(),
                                      "agreement": self.agreement.tolist()}
        return summary


def calibrate_batch(confidence, agree, alpha: float, delta: float, grid=None,
                    n_grid: int = CalibrateConfig.n_grid,
                    procedure: str = CalibrateConfig.procedure,
                    min_n=CalibrateConfig.min_n) -> np.ndarray:
    """Certified thresholds for many calibration sets at once.

    Parameters
    ----------
    confidence : array-like of float, shape (n_batches, n_items)
    agree : array-like of bool, shape (n_batches, n_items)
    alpha, delta, grid, n_grid, procedure, min_n
        As for :class:`SelectiveCalibrator` (one alpha).

    Returns
    -------
    threshold : ndarray of float, shape (n_batches,)
        ``inf`` where nothing is accepted. Row by row equal to ``SelectiveCalibrator``.
    """
    (alpha,) = check_alpha(alpha)
    delta = check_delta(delta)
    grid = as_grid(grid, n_grid)
    n, k = counts_at_thresholds(np.atleast_2d(confidence), np.atleast_2d(agree), grid)
    index = select_thresholds(n, k, alpha, delta, procedure, min_n).index
    values = np.append(np.asarray(grid, dtype=float), np.inf)
    return values[index]  # index -1 picks the appended inf


def _resolve_size(calibration_size, n_items: int, design: str) -> int:
    if isinstance(calibration_size, bool):
        raise ValueError(f"calibration_size must be a fraction in (0, 1) or a count, got {calibration_size!r}")
    if isinstance(calibration_size, (float, np.floating)) and 0 < calibration_size < 1:
        size = int(round(calibration_size * n_items))
    elif isinstance(calibration_size, (int, np.integer)) and calibration_size >= 1:
        size = int(calibration_size)
    else:
        raise ValueError(f"calibration_size must be a fraction in (0, 1) or a positive count, got "
                         f"{calibration_size!r}")
    if design == "split" and not 1 <= size < n_items:
        raise ValueError(f"a split needs 1 <= calibration_size < n_items ({n_items}), got {size}; "
                         "leave items for the test part")
    return max(size, 1)


def draw_calibration_sets(rng, n_rows: int, n_items: int, size: int, design: str,
                          group_index=None, group_size: int | None = None):
    """Draw ``n_rows`` calibration sets; return them as (repetition, item) index pairs.

    Parameters
    ----------
    rng : numpy.random.Generator
    n_rows, n_items, size : int
        Repetitions, items in the file, items per calibration set.
    design : {"split", "population"}
        split: ``size`` distinct items (or ``group_size`` whole groups); population:
        ``size`` draws with replacement.
    group_index : ndarray of int, shape (n_items,), optional
        Group number of each item (split design).

    Returns
    -------
    rows, items : ndarray of int, same shape
        Item ``items[i]`` is in the calibration set of repetition ``rows[i]`` (with
        multiplicity in the population design).
    """
    if design == "population":
        items = rng.integers(0, n_items, size=(n_rows, size))
    elif group_index is None:
        keys = rng.random((n_rows, n_items))
        items = np.argpartition(keys, size - 1, axis=1)[:, :size]
    else:
        n_groups = int(group_index.max()) + 1
        keys = rng.random((n_rows, n_groups))
        chosen = np.zeros((n_rows, n_groups), dtype=bool)
        picked = np.argpartition(keys, group_size - 1, axis=1)[:, :group_size]
        np.put_along_axis(chosen, picked, True, axis=1)
        return np.nonzero(chosen[:, group_index])
    return np.broadcast_to(np.arange(n_rows)[:, None], items.shape), items


def _cell_counts(rows, items, position, bad, n_rows: int, n_cells: int):
    """Per (row, grid cell) counts of items and disagreements, as (n_rows, n_cells) arrays."""
    flat = rows * n_cells + position[items]
    total = np.bincount(flat.ravel(), minlength=n_rows * n_cells).reshape(n_rows, n_cells)
    wrong = np.bincount(flat.ravel(), weights=bad[items].ravel(),
                        minlength=n_rows * n_cells).reshape(n_rows, n_cells)
    return total, wrong.astype(np.int64)


def _from_top(cells: np.ndarray, n_thresholds: int) -> np.ndarray:
    """Cell counts (ascending cells) -> counts accepted at each descending threshold."""
    return np.cumsum(cells[..., ::-1], axis=-1)[..., :n_thresholds]


def validity_study_from_agreement(confidence, agree, alpha: float = CalibrateConfig.alpha,
                                  delta: float = CalibrateConfig.delta,
                                  n_repetitions: int = ValidityOptions.repetitions,
                                  design: str = "split",
                                  calibration_size=ValidityOptions.calibration_size, groups=None,
                                  procedure: str = CalibrateConfig.procedure, grid=None,
                                  n_grid: int = CalibrateConfig.n_grid,
                                  min_n=CalibrateConfig.min_n,
                                  random_state=None) -> ValidityResult:
    """:func:`validity_study` on agreement indicators (ties already resolved).

    Parameters
    ----------
    confidence : array-like of float, shape (n_items,)
    agree : array-like of bool, shape (n_items,)
    Other parameters as for :func:`validity_study`.
    """
    (alpha,) = check_alpha(alpha)
    delta = check_delta(delta)
    check_procedure(procedure)
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {sorted(DESIGNS)}, got {design!r}")
    if isinstance(n_repetitions, bool) or not isinstance(n_repetitions, (int, np.integer)) or n_repetitions < 1:
        raise ValueError(f"n_repetitions must be a positive integer, got {n_repetitions!r}")
    confidence = np.asarray(confidence, dtype=float).ravel()
    agree = np.asarray(agree, dtype=bool).ravel()
    if confidence.size != agree.size:
        raise ValueError(f"confidence ({confidence.size}) and agree ({agree.size}) differ in length")
    if confidence.size < 2:
        raise ValueError(f"a validity study needs at least 2 items, got {confidence.size}")
    if np.any(np.isnan(confidence) | (confidence == np.inf)):  # -inf: never accepted
        raise ValueError("confidence holds NaN or +inf values")
    n_items = confidence.size
    size = _resolve_size(calibration_size, n_items, design)
    grid = as_grid(grid, n_grid)
    n_thresholds = grid.size
    n_cells = n_thresholds + 1
    rng = np.random.default_rng(random_state)

    # each item's grid cell, once: cell p = number of thresholds <= its confidence
    position = np.searchsorted(np.asarray(grid, dtype=float)[::-1], confidence, side="right")
    bad = ~agree
    file_cells = np.bincount(position, minlength=n_cells)
    file_wrong = np.bincount(position, weights=bad, minlength=n_cells).astype(np.int64)

    group_index = None
    if groups is not None:
        if design != "split":
            raise ValueError("groups apply to the split design only")
        groups = np.asarray(groups, dtype=object).ravel()
        if groups.size != n_items:
            raise ValueError(f"groups ({groups.size}) and confidence ({n_items}) differ in length")
        _, group_index = np.unique(groups.astype(str), return_inverse=True)
        n_groups = int(group_index.max()) + 1
        if n_groups < 2:
            raise ValueError("a group-aware split needs at least 2 groups")
        group_size = max(1, min(n_groups - 1, int(round(size / n_items * n_groups))))

    chunk = max(1, _CHUNK_CELLS // max(size if groups is None else n_items, 1))
    outputs = {name: [] for name in ("threshold", "success", "coverage", "agreement", "size")}
    values = np.append(np.asarray(grid, dtype=float), np.inf)
    for start in range(0, n_repetitions, chunk):
        n_rows = min(chunk, n_repetitions - start)
        rows, items = draw_calibration_sets(rng, n_rows, n_items, size, design, group_index,
                                            None if group_index is None else group_size)
        cal_cells, cal_wrong = _cell_counts(rows, items, position, bad, n_rows, n_cells)
        n_cal = _from_top(cal_cells, n_thresholds)
        k_cal = _from_top(cal_wrong, n_thresholds)
        index = select_thresholds(n_cal, k_cal, alpha, delta, procedure, min_n).index
        if design == "population":
            eval_cells = np.broadcast_to(file_cells, cal_cells.shape)
            eval_wrong = np.broadcast_to(file_wrong, cal_cells.shape)
        else:
            eval_cells, eval_wrong = file_cells - cal_cells, file_wrong - cal_wrong
        n_eval = _from_top(eval_cells, n_thresholds)
        k_eval = _from_top(eval_wrong, n_thresholds)
        safe = np.clip(index, 0, None)[:, None]
        accepted = np.where(index >= 0, np.take_along_axis(n_eval, safe, axis=1)[:, 0], 0)
        wrong = np.where(index >= 0, np.take_along_axis(k_eval, safe, axis=1)[:, 0], 0)
        evaluated = eval_cells.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            observed = np.where(accepted > 0, 1.0 - wrong / np.maximum(accepted, 1), np.nan)
        # success: agreement >= 1 - alpha, i.e. wrong <= alpha * accepted (exact in integers
        # up to float rounding of alpha * accepted); nothing accepted counts as success
        outputs["success"].append((accepted == 0) | (wrong <= alpha * accepted + 1e-9))
        outputs["threshold"].append(values[index])
        outputs["coverage"].append(accepted / np.maximum(evaluated, 1))
        outputs["agreement"].append(observed)
        outputs["size"].append(cal_cells.sum(axis=1))

    success = np.concatenate(outputs["success"])
    threshold = np.concatenate(outputs["threshold"])
    n_success = int(success.sum())
    low, high = clopper_pearson_interval(n_success, n_repetitions, 0.95)
    return ValidityResult(
        design=design, procedure=procedure, alpha=alpha, delta=delta,
        n_repetitions=int(n_repetitions), n_items=n_items,
        calibration_size=int(round(np.concatenate(outputs["size"]).mean())),
        success=success, threshold=threshold, coverage=np.concatenate(outputs["coverage"]),
        agreement=np.concatenate(outputs["agreement"]), success_rate=n_success / n_repetitions,
        success_interval=(float(low), float(high)),
        mean_coverage=float(np.concatenate(outputs["coverage"]).mean()),
        abstention_rate=float(np.isinf(threshold).mean()))


def validity_study(confidence, pred, human_label, alpha: float = CalibrateConfig.alpha,
                   delta: float = CalibrateConfig.delta,
                   n_repetitions: int = ValidityOptions.repetitions, design: str = "split",
                   calibration_size=ValidityOptions.calibration_size, groups=None,
                   procedure: str = CalibrateConfig.procedure, grid=None,
                   n_grid: int = CalibrateConfig.n_grid,
                   min_n=CalibrateConfig.min_n, tie_policy: str = CalibrateConfig.tie_policy,
                   random_state=None) -> ValidityResult:
    """Repeat calibration on redrawn calibration sets and count how often the guarantee holds.

    Parameters
    ----------
    confidence : array-like of float, shape (n_items,)
    pred : array-like of str, shape (n_items,)
        The judge's verdicts ("a" / "b").
    human_label : array-like of str, shape (n_items,)
        "a", "b" or "tie"; ties follow ``tie_policy``.
    alpha, delta : float in (0, 1), default=CalibrateConfig.alpha, CalibrateConfig.delta
    n_repetitions : int, default=ValidityOptions.repetitions
    design : {"split", "population"}, default="split"
        See ``DESIGNS`` and the module notes.
    calibration_size : float in (0, 1) or int, default=ValidityOptions.calibration_size
        Fraction or number of items per calibration set (population design: drawn with
        replacement). With groups, the fraction applies to groups.
    groups : array-like, shape (n_items,), optional
        Group of each item (split design): whole groups go to one side.
    procedure, grid, n_grid, min_n, tie_policy
        As for :class:`SelectiveCalibrator`.
    random_state : int, numpy Generator or None
        Seed: the same seed gives the same study.

    Returns
    -------
    ValidityResult
    """
    if tie_policy not in TIE_POLICIES:
        raise ValueError(f"tie_policy must be one of {sorted(TIE_POLICIES)}, got {tie_policy!r}")
    confidence = np.asarray(confidence, dtype=float).ravel()
    pred = np.asarray(pred, dtype=object).ravel()
    human_label = np.asarray(human_label, dtype=object).ravel()
    if not (confidence.size == pred.size == human_label.size):
        raise ValueError(f"confidence ({confidence.size}), pred ({pred.size}) and human_label "
                         f"({human_label.size}) must have the same length")
    # no verdict (pred None): never accepted, as in SelectiveCalibrator.calibrate
    confidence = np.where(verdict_mask(pred), confidence, -np.inf)
    agree, kept = agreement(pred, human_label, tie_policy)
    if groups is not None:
        groups = np.asarray(groups, dtype=object).ravel()
        if groups.size != confidence.size:
            raise ValueError(f"groups ({groups.size}) and confidence ({confidence.size}) differ in length")
        groups = groups[kept]
    return validity_study_from_agreement(
        confidence[kept], agree, alpha=alpha, delta=delta, n_repetitions=n_repetitions,
        design=design, calibration_size=calibration_size, groups=groups, procedure=procedure,
        grid=grid, n_grid=n_grid, min_n=min_n, random_state=random_state)
