"""Choosing the test design on training rows: the grid, where the scan starts, and a cascade's
order, δ split and stages.

Fixed-sequence testing controls the error at δ for *any* order of thresholds that is fixed
before the calibration labels are read (Bauer 1991; Angelopoulos et al., "Learn then Test",
2021, which also learns the order on a split of its own). Everything here reads training rows
only, or, for the start of a fixed grid without training rows, the number of calibration items
above each threshold without their labels (the same information the minimum-n rule already
uses). So the binomial argument of :mod:`marc_ray.calibrate.testing` is untouched; the validity
study repeats the whole design in each repetition (:func:`design_and_calibrate`).

Why it matters (measured on real judges, issue 25): probabilities that pile up near 1 make
the first grid points hold many items, and a fine grid starts the scan on a tiny slice that
fails by chance; a cascade that splits δ equally over a judge that cannot certify loses that
share. The rules:

* **grid**: with training rows, the quantiles of their confidences; else the fixed grid;
* **start**: the first (strictest) grid point at which the training rows predict the exact
  test passes with probability at least ``p`` (:data:`DEFAULT_PASS_PROBABILITY`, 0.99; where
  no point reaches it, the point most likely to pass):
  ``P(K <= k*(n))``, where ``n`` is the calibration items expected above the point
  (calibration size × the training rows' coverage there), ``K`` their disagreements, beta-
  binomial from the training rows' ``k`` of ``n_t`` above it (:func:`predictive_pass_probability`),
  and ``k*(n)`` the largest passing ``k`` (:func:`~marc_ray.calibrate.bounds.max_disagreements`).
  The points above it are never tested. Why so high a ``p``: failing the first test ends the
  scan with nothing certified, so a start that passes only half the time loses everything half
  the time (measured on generated data: mean coverage 0.61 at p = 0.5, 0.80 at 0.9), while a
  lower start costs nothing once the scan would have reached it anyway (everything above the
  last passing point is certified, wherever the scan began). The prediction is itself an
  estimate from finitely many rows, so a nominal 0.9 passed about 80% of the time in tests. Without training rows the same rule at a stated prior rate ``r`` (default α/2) gives
  a minimum number of accepted items, a stricter minimum-n rule;
* **cascade**: each design's certified coverage is *predicted* on the training rows (the scan
  run on them at the expected calibration size, with the pass-probability rule, stage by
  stage); the order is the given one or by cost per predicted decided item; stages may be
  dropped (their δ goes to the others); δ is split equally, in proportion to each judge's
  predicted coverage, or by a search over a simplex grid. The largest predicted coverage wins,
  or, given a cost per judge, the cheapest design within 2% of it.

A design per group (with ``calibrate.by``) is :mod:`marc_ray.calibrate.group_design`; what a
design costs per item, beside what it certifies, is :mod:`marc_ray.calibrate.cost_coverage`.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.special import betaln, gammaln
from scipy.stats import binom

from .bounds import max_disagreements, min_n_to_pass
from .config import DEFAULT_PASS_PROBABILITY, DESIGN_DELTA_SPLITS, DESIGN_ORDERS, CalibrateConfig
from .cost_coverage import expected_cost, reach_shares
from .grid import ThresholdGrid, counts_at_thresholds, fixed_grid, quantile_grid
from .validity import ValidityOptions

__all__ = ["DEFAULT_PASS_PROBABILITY", "DELTA_SPLITS", "ORDERS", "GridDesign", "CascadeDesign",
           "pass_probability", "predictive_pass_probability", "min_n_for_pass", "design_grid", "predicted_coverage",
           "design_cascade", "design_stages", "design_and_calibrate", "cascade_outcome", "design_validity",
           "rows_record"]

MIN_TRAINING_ROWS = 30          # fewer usable training rows: the fixed grid and the prior rule
STEP_ITEMS = 5                  # a designed grid adds about this many calibration items per step
COVERAGE_TOLERANCE = 0.02       # with costs: the cheapest design within 2% of the best predicted coverage
DELTA_SPLITS, ORDERS = DESIGN_DELTA_SPLITS, DESIGN_ORDERS  # the choices (calibrate/config.py)


def rows_record(ids: Sequence[str] | None, count: int) -> dict:
    """What a design read: the number of rows and a SHA-256 digest of their sorted ids."""
    if ids is None:
        return {"count": int(count), "digest": None}
    digest = hashlib.sha256("\n".join(sorted(str(i) for i in ids)).encode()).hexdigest()
    return {"count": int(count), "digest": digest}


def pass_probability(n, risk, alpha: float, delta: float) -> np.ndarray:
    """P(the exact test at level δ passes) with ``n`` accepted items of disagreement rate ``risk``.

    ``P(Bin(n, risk) <= k*(n))``; 0 where no ``k`` passes (``n`` below the minimum).
    """
    n = np.asarray(np.round(n), dtype=np.int64)
    risk = np.clip(np.asarray(risk, dtype=float), 0.0, 1.0)
    k_max = max_disagreements(np.maximum(n, 0), alpha, delta)
    return np.where(k_max < 0, 0.0, binom.cdf(np.maximum(k_max, 0), np.maximum(n, 1), risk))


def min_n_for_pass(alpha: float, delta: float, prior_risk: float,
                   probability: float = DEFAULT_PASS_PROBABILITY, n_max: int = 1_000_000) -> int:
    """The fewest accepted items whose test passes with ``probability`` at ``prior_risk``.

    Never below :func:`~marc_ray.calibrate.bounds.min_n_to_pass` (the floor: below it nothing
    can pass). Pass probability is close to, not exactly, monotone in ``n`` (``k*`` is an
    integer): the first ``n`` that reaches it is returned.
    """
    if not 0 <= prior_risk < alpha:
        raise ValueError(f"the prior disagreement rate must lie in [0, alpha), got {prior_risk}")
    floor = min_n_to_pass(alpha, delta)
    size = floor
    while size <= n_max:
        candidates = np.arange(size, min(2 * size, n_max) + 1)
        reached = np.flatnonzero(pass_probability(candidates, prior_risk, alpha, delta) >= probability)
        if reached.size:
            return int(candidates[reached[0]])
        size = 2 * size
    raise ValueError(f"no calibration size up to {n_max:,} passes with probability {probability} "
                     f"at a disagreement rate of {prior_risk}")


@dataclass
class GridDesign:
    """The thresholds a calibration will test, in order, and where they came from.

    ``grid`` starts at the chosen start (the points above it are never tested); ``min_n`` is
    the calibrator's minimum-n rule (an int from the prior rule, or "auto").
    """

    grid: ThresholdGrid
    min_n: int | str
    source: str                 # "training rows" or "fixed grid, prior rate"
    start: float                # the first threshold tested (or, for the prior rule, the grid's top)
    pass_probability: float     # the p of the rule
    predicted_pass: float | None  # the training rows' predicted pass probability at the start
    rows: dict = field(default_factory=dict)  # rows_record of the training rows read
    prior_risk: float | None = None

    def record(self) -> dict:
        """The JSON-ready description the certificate keeps."""
        return {"source": self.source, "kind": self.grid.kind, "n_points": int(self.grid.size),
                "start": float(self.start), "min_n": self.min_n,
                "pass_probability": self.pass_probability,
                "predicted_pass_at_start": self.predicted_pass, "prior_risk": self.prior_risk,
                "rows": self.rows}


def predictive_pass_probability(n, k_train, n_train, alpha: float, delta: float) -> np.ndarray:
    """P(the test passes) at ``n`` calibration items, predicted from ``k_train`` disagreements
    among ``n_train`` training items above the same threshold.

    The disagreement rate is not taken at face value (a few training items with no
    disagreement would promise a certain pass): it gets the posterior of a uniform prior,
    Beta(k + 1, n_train - k + 1), so the number of calibration disagreements is beta-binomial
    and ``P = BetaBinom(n, k + 1, n_train - k + 1).cdf(k*(n))``.
    """
    n = np.asarray(np.round(n), dtype=np.int64)
    k_train = np.asarray(k_train, dtype=float)
    n_train = np.asarray(n_train, dtype=float)
    k_max = max_disagreements(np.maximum(n, 0), alpha, delta)
    probability = _beta_binomial_cdf(np.maximum(k_max, 0), np.maximum(n, 1), k_train + 1,
                                     n_train - k_train + 1)
    return np.where(k_max < 0, 0.0, probability)


def _beta_binomial_cdf(k, n, a, b) -> np.ndarray:
    """``scipy.stats.betabinom.cdf`` summed directly from the log-pmf
    ``ln C(n, i) + ln B(i + a, n - i + b) - ln B(a, b)`` (scipy's generic cdf sums its pmf one
    point at a time: ~100× slower on a grid of thresholds)."""
    k, n, a, b = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (k, n, a, b)))
    i = np.arange(int(k.max(initial=0)) + 1, dtype=float)
    inside = i <= np.minimum(k, n)[..., None]
    safe = np.where(inside, i, 0.0)  # terms past k (or n) are masked: keep their logs finite
    log_pmf = (gammaln(n[..., None] + 1) - gammaln(safe + 1) - gammaln(n[..., None] - safe + 1)
               + betaln(safe + a[..., None], n[..., None] - safe + b[..., None])
               - betaln(a, b)[..., None])
    terms = np.where(inside, np.exp(log_pmf), 0.0)
    return np.minimum(terms.sum(axis=-1), 1.0)


def _scan_points(confidence, agree, grid, n_calibration: int, alpha: float, delta: float):
    """Per grid point: the training coverage above it and the predicted pass probability."""
    n_train, k_train = counts_at_thresholds(confidence, agree, grid)
    coverage = n_train / max(len(confidence), 1)
    expected_n = n_calibration * coverage
    return coverage, predictive_pass_probability(expected_n, k_train, n_train, alpha, delta)


def design_grid(alpha: float, delta: float, n_calibration: int, *, train_confidence=None,
                train_agree=None, train_ids=None, n_grid: int = CalibrateConfig.n_grid,
                probability: float = DEFAULT_PASS_PROBABILITY, prior_risk: float | None = None,
                low: float = 0.0, high: float = 1.0) -> GridDesign:
    """The grid and its start (module docstring), from training rows when there are enough.

    Parameters
    ----------
    alpha, delta : the level the calibration will certify at (a cascade stage: its own δ_l)
    n_calibration : int
        The calibration items the stage will see (a count: no label is read).
    train_confidence, train_agree : array-like, shape (n_train,), optional
        The training rows' confidences and whether the judge agreed with the humans there
        (rows the tie policy drops left out).
    train_ids : the training rows' ids (recorded as a digest; the quantile grid refuses a
        calibration set that shares any of them)
    """
    if train_confidence is not None and len(train_confidence) >= MIN_TRAINING_ROWS:
        confidence = np.asarray(train_confidence, dtype=float)
        agree = np.asarray(train_agree, dtype=bool)
        finite = np.isfinite(confidence)
        confidence, agree = confidence[finite], agree[finite]
        ids = None if train_ids is None else np.asarray(train_ids, dtype=object)[finite]
        grid = quantile_grid(confidence, designed_points(n_grid, n_calibration), ids=ids)
        _, passes = _scan_points(confidence, agree, grid, n_calibration, alpha, delta)
        # no point predicted to pass that likely: start at the best chance the rows see
        start = int(np.flatnonzero(passes >= min(probability, passes.max()))[0])
        # the range's low end closes the grid, so the scan can reach every item (the interior
        # quantiles alone stop one quantile short); it is data-independent
        designed = ThresholdGrid(np.append(np.asarray(grid)[start:], low), kind="quantile",
                                 source_ids=grid.source_ids)
        return GridDesign(designed, "auto", "training rows", float(designed[0]), probability,
                          float(passes[start]), rows_record(ids, confidence.size))
    risk = alpha / 2 if prior_risk is None else prior_risk
    grid = fixed_grid(n_grid, low, high)
    return GridDesign(grid, min_n_for_pass(alpha, delta, risk, probability), "fixed grid, prior rate",
                      float(grid[0]), probability, None, rows_record(None, 0), prior_risk=risk)


def designed_points(n_grid: int, n_calibration: int) -> int:
    """Quantile points of a designed grid: ``n_grid`` at most, and few enough that each step
    adds about :data:`STEP_ITEMS` calibration items. A finer grid only adds tests where the
    bound hovers near α, and the scan stops at the first chance crossing (measured: on
    generated judges a 200-point quantile grid certified 0.87 where a 40-point one certified
    0.94); so the resolution asked for is a cap, and 200 or 2,000 give the same grid."""
    return int(max(10, min(n_grid, n_calibration // STEP_ITEMS)))


def predicted_coverage(confidence, agree, n_calibration: int, alpha: float, delta: float,
                       n_grid: int = CalibrateConfig.n_grid,
                       probability: float = DEFAULT_PASS_PROBABILITY,
                       *, counts: tuple | None = None) -> tuple[float, float]:
    """The certified coverage (and threshold) the training rows predict for one judge.

    The scan is run on the training rows' predicted pass probabilities: it starts at the
    designed start (:func:`design_grid`'s rule) and is predicted to stop
    where it first falls below one half (past the start ``n`` only grows, so the probability
    stays near 1 until the disagreement rate nears α and then falls fast: one half marks the
    median stop; a threshold at ``probability`` would stop at every small dip). The predicted
    coverage is the training rows' coverage at the last point before the stop (0 and +inf when
    no point is more likely to pass than to fail). ``counts``: :func:`_grid_counts` of the same
    rows, when the caller keeps them (a cascade design tries many δ on the same rows).
    """
    if counts is None:
        counts = _grid_counts(confidence, agree, n_calibration, n_grid)
    if counts is None:
        return 0.0, float("inf")
    grid, coverage, n_train, k_train = counts
    passes = predictive_pass_probability(n_calibration * coverage, k_train, n_train, alpha, delta)
    if passes.max() < 0.5:  # even the best start is more likely to fail than to pass
        return 0.0, float("inf")
    start = int(np.flatnonzero(passes >= min(probability, passes.max()))[0])
    falls = np.flatnonzero(passes[start:] < 0.5)  # passes[start] >= 0.5: falls[0] >= 1
    last = start + (int(falls[0]) - 1 if falls.size else len(passes) - start - 1)
    return float(coverage[last]), float(grid[last])


def _grid_counts(confidence, agree, n_calibration: int, n_grid: int) -> tuple | None:
    """The designed quantile grid of one judge's training rows, the rows' coverage and ``n``,
    ``k`` above each point (what :func:`predicted_coverage` reads; δ does not enter); None
    with too few rows."""
    confidence = np.asarray(confidence, dtype=float)
    agree = np.asarray(agree, dtype=bool)
    finite = np.isfinite(confidence)
    confidence, agree = confidence[finite], agree[finite]
    if confidence.size < MIN_TRAINING_ROWS or n_calibration < 1:
        return None
    grid = quantile_grid(confidence, designed_points(n_grid, n_calibration))
    n_train, k_train = counts_at_thresholds(confidence, agree, grid)
    return grid, n_train / confidence.size, n_train, k_train


class _StageMemo:
    """A stage's prediction on a judge's training rows, each computed once: a cascade design
    simulates every subset and δ split, and most of them show a stage the same rows (every
    split of a subset shares its first stage; later stages differ only where an earlier
    threshold does). The grid and counts are kept per (judge, rows, calibration size), the
    predicted coverage and threshold per δ as well."""

    def __init__(self, confidences, agrees, n_grid: int, alpha: float, probability: float):
        self.confidences, self.agrees, self.n_grid = confidences, agrees, n_grid
        self.alpha, self.probability = alpha, probability
        self.counts: dict = {}
        self.predictions: dict = {}

    def __call__(self, judge: int, rows: np.ndarray, n_calibration: int, delta: float
                 ) -> tuple[float, float]:
        """:func:`predicted_coverage` of judge ``judge`` on the training rows ``rows`` (mask)."""
        key = (judge, n_calibration, hashlib.blake2b(np.packbits(rows).tobytes(), digest_size=16).digest())
        if key not in self.counts:
            self.counts[key] = _grid_counts(self.confidences[rows, judge], self.agrees[rows, judge],
                                            n_calibration, self.n_grid)
        if (key, delta) not in self.predictions:
            self.predictions[key, delta] = predicted_coverage(
                None, None, n_calibration, self.alpha, delta, self.n_grid, self.probability,
                counts=self.counts[key])
        return self.predictions[key, delta]


@dataclass
class CascadeDesign:
    """A cascade's order, kept stages and δ split, chosen on training rows."""

    order: list[int]              # indices into the judges given, in cascade order (kept only)
    dropped: list[int]            # judges predicted to certify nothing (their δ goes to the others)
    delta_weights: list[float]    # per kept stage, summing to 1
    predicted_coverage: float
    expected_cost: float | None   # per item: Σ_l cost_l × share of items reaching stage l
    rule: dict                    # the rules used (order, delta split, p)
    predicted_reach: list[float] = field(default_factory=list)  # per kept stage: the share of
                                  # training rows predicted to reach it (the first: all)

    def record(self, names: Sequence[str]) -> dict:
        return {"order": [names[i] for i in self.order], "dropped": [names[i] for i in self.dropped],
                "delta_weights": self.delta_weights, "predicted_coverage": self.predicted_coverage,
                "predicted_reach": self.predicted_reach,
                "expected_cost_per_item": self.expected_cost, **self.rule}


def _simulate(confidences, verdicts, order, deltas, n_calibration, costs, predict: _StageMemo):
    """Predicted coverage, cost and per-stage reach of a cascade on the training rows (stage
    by stage)."""
    remaining = np.ones(confidences.shape[0], dtype=bool)
    reach = []
    for position, judge in enumerate(order):
        reach.append(float(remaining.mean()))
        seen = remaining & verdicts[:, judge]
        if not seen.any():
            continue
        _, threshold = predict(judge, seen, int(round(n_calibration * seen.mean())),
                               float(deltas[position]))
        remaining &= ~(verdicts[:, judge] & (confidences[:, judge] >= threshold))
    cost = None if costs is None else expected_cost(costs[list(order)], reach)
    return 1.0 - remaining.mean(), cost, reach


def _simplex(n_stages: int, steps: int = 10) -> list[np.ndarray]:
    points = [np.array(c) / steps for c in itertools.product(range(1, steps + 1), repeat=n_stages)
              if sum(c) == steps]
    return points or [np.full(n_stages, 1.0 / n_stages)]


def design_cascade(train_confidences, train_agrees, train_verdicts, n_calibration: int,
                   alpha: float, delta: float, *, costs: Sequence[float] | None = None,
                   order: str = "given", delta_split: str = CalibrateConfig.delta_split,
                   drop: bool = True, n_grid: int = CalibrateConfig.n_grid,
                   probability: float = DEFAULT_PASS_PROBABILITY,
                   coverage_tolerance: float = COVERAGE_TOLERANCE) -> CascadeDesign:
    """Choose a cascade's order, stages and δ split on training rows (module docstring).

    Every order-preserving subset of the judges (all of them when ``drop`` is False) with
    every δ split of the rule is simulated on the training rows (:func:`predicted_coverage`
    stage by stage, each stage on the rows the earlier ones leave). Without costs the design
    with the largest predicted coverage wins (ties: fewer stages). With costs, the cheapest
    expected cost among the designs within ``coverage_tolerance`` of the largest predicted
    coverage wins: a judge that would decide little is dropped rather than paid for.

    Parameters
    ----------
    train_confidences, train_agrees, train_verdicts : arrays of shape (n_train, L)
        Per training row and judge: the confidence, whether the judge agreed with the humans,
        and whether it gave a verdict at all (an item without one moves on).
    n_calibration : the calibration items (a count)
    costs : per judge, optional (tokens or price per item); "cost" order needs them
    order : {"given", "cost"}; delta_split : {"equal", "coverage", "optimised"}
    drop : allow dropping judges (their δ goes to the others)
    """
    confidences = np.asarray(train_confidences, dtype=float)
    agrees = np.asarray(train_agrees, dtype=bool)
    verdicts = np.asarray(train_verdicts, dtype=bool) & np.isfinite(confidences)
    n_judges = confidences.shape[1]
    if order not in ORDERS:
        raise ValueError(f"order must be one of {sorted(ORDERS)}, got {order!r}")
    if delta_split not in DELTA_SPLITS:
        raise ValueError(f"delta_split must be one of {sorted(DELTA_SPLITS)}, got {delta_split!r}")
    if order == "cost" and costs is None:
        raise ValueError("order 'cost' needs a cost per judge")
    cost_array = None if costs is None else np.asarray(costs, dtype=float)
    predict = _StageMemo(confidences, agrees, n_grid, alpha, probability)
    alone = np.array([predict(j, verdicts[:, j], int(round(n_calibration * verdicts[:, j].mean())),
                              float(delta))[0] * verdicts[:, j].mean() for j in range(n_judges)])
    ranked = list(range(n_judges))
    if order == "cost":
        ranked.sort(key=lambda j: cost_array[j] / max(alone[j], 1e-9))
    subsets = ([[j for j in ranked if mask >> j & 1] for mask in range(1, 2 ** n_judges)]
               if drop else [ranked])
    designs = []
    for subset in subsets:
        if delta_split == "equal":
            splits = [np.full(len(subset), 1.0 / len(subset))]
        elif delta_split == "coverage":
            weights = np.maximum(alone[subset], 1e-3)
            splits = [weights / weights.sum()]
        else:
            splits = _simplex(len(subset))
        for weights in splits:
            coverage, cost, reach = _simulate(confidences, verdicts, subset, delta * weights,
                                              n_calibration, cost_array, predict)
            designs.append((coverage, cost, subset, weights, reach))
    best_coverage = max(d[0] for d in designs)
    if cost_array is None:
        coverage, cost, subset, weights, reach = max(designs, key=lambda d: (d[0], -len(d[2])))
    else:
        near = [d for d in designs if d[0] >= (1 - coverage_tolerance) * best_coverage - 1e-12]
        coverage, cost, subset, weights, reach = min(near, key=lambda d: (d[1], -d[0]))
    return CascadeDesign(list(subset), [j for j in range(n_judges) if j not in subset],
                         [float(w) for w in weights], float(coverage),
                         None if cost is None else float(cost),
                         {"order_rule": order, "delta_split_rule": delta_split, "drop": drop,
                          "pass_probability": probability,
                          "coverage_tolerance": coverage_tolerance if cost_array is not None else None,
                          "predicted_coverage_alone": [float(x) for x in alone]}, reach)


def design_stages(train: dict, n_calibration: int, alpha: float, delta: float, *, costs=None,
                  order: str = "given", delta_split: str = CalibrateConfig.delta_split,
                  drop: bool = True, n_grid: int = CalibrateConfig.n_grid,
                  probability: float = DEFAULT_PASS_PROBABILITY,
                  tie_policy: str = CalibrateConfig.tie_policy
                  ) -> tuple[CascadeDesign, list[GridDesign]]:
    """The design of a cascade (one judge: a cascade of one) from its training rows alone.

    ``train``: a dict of ``confidence`` (n, L), ``pred`` (n, L) of "a" / "b" / None,
    ``human_label`` (n,) and optionally ``ids`` (n,). ``n_calibration``: the calibration rows
    the stages will see (a count). Returns the :class:`CascadeDesign` (kept judges in order, δ
    weights) and each kept stage's :class:`GridDesign` (its grid and start), designed on the
    training rows the earlier stages are predicted to leave.
    """
    from ..contracts import agreement

    confidence = np.asarray(train["confidence"], dtype=float)
    pred = np.asarray(train["pred"], dtype=object)
    human = np.asarray(train["human_label"], dtype=object)
    verdicts = np.isin(pred, ["a", "b"]) & np.isfinite(confidence)
    agrees = np.zeros(confidence.shape, dtype=bool)
    usable = np.ones(len(human), dtype=bool)
    for j in range(confidence.shape[1]):
        agree, kept = agreement(np.where(verdicts[:, j], pred[:, j], "a"), human, tie_policy)
        agrees[kept, j] = agree
        usable &= kept
    confidence, agrees, verdicts = confidence[usable], agrees[usable], verdicts[usable]
    train_ids = None if train.get("ids") is None else np.asarray(train["ids"], dtype=object)[usable]
    design = design_cascade(confidence, agrees, verdicts, n_calibration, alpha, delta, costs=costs,
                            order=order, delta_split=delta_split, drop=drop, n_grid=n_grid,
                            probability=probability)
    deltas = delta * np.asarray(design.delta_weights)
    grids = []
    remaining = np.ones(len(confidence), dtype=bool)
    for position, judge in enumerate(design.order):
        seen = remaining & verdicts[:, judge]
        expected = int(round(n_calibration * max(seen.mean(), 1e-9)))
        grids.append(design_grid(alpha, float(deltas[position]), expected,
                                 train_confidence=confidence[seen, judge],
                                 train_agree=agrees[seen, judge],
                                 train_ids=None if train_ids is None else train_ids[seen],
                                 n_grid=n_grid, probability=probability))
        _, threshold = predicted_coverage(confidence[seen, judge], agrees[seen, judge], expected,
                                          alpha, float(deltas[position]), n_grid, probability)
        remaining &= ~(verdicts[:, judge] & (confidence[:, judge] >= threshold))
    return design, grids


def design_and_calibrate(train: dict, calibration: dict, alpha: float, delta: float, *,
                         tie_policy: str = CalibrateConfig.tie_policy, **options):
    """The whole procedure: design on ``train`` (:func:`design_stages`), then calibrate the
    designed cascade on ``calibration`` (what the validity study repeats).

    ``calibration``: the same keys as ``train``. Returns ``(calibrator, design)``: a fitted
    :class:`~marc_ray.calibrate.cascade.CascadeCalibrator` whose stages follow the design,
    each on its own designed grid, and the :class:`CascadeDesign`.
    """
    from .cascade import CascadeCalibrator

    design, grids = design_stages(train, len(calibration["human_label"]), alpha, delta,
                                  tie_policy=tie_policy, **options)
    cal_confidence = np.asarray(calibration["confidence"], dtype=float)
    cal_pred = np.asarray(calibration["pred"], dtype=object)
    calibrator = CascadeCalibrator(alpha=alpha, delta=delta, delta_split=design.delta_weights,
                                   stage_grids=[(g.grid, g.min_n) for g in grids],
                                   tie_policy=tie_policy)
    calibrator.calibrate(cal_confidence[:, design.order], cal_pred[:, design.order],
                         calibration["human_label"], ids=calibration.get("ids"),
                         names=[str(j) for j in design.order])
    calibrator.design_ = design
    calibrator.grid_designs_ = grids
    return calibrator, design


def cascade_outcome(calibrator, design: CascadeDesign, data: dict, alpha: float,
                    tie_policy: str = CalibrateConfig.tie_policy, costs=None) -> dict:
    """How a designed, calibrated cascade does on labelled items ``data`` (same keys as in
    :func:`design_and_calibrate`): coverage, agreement on decided items, success (agreement
    >= 1 - alpha, or nothing decided) and the expected cost per item."""
    from ..contracts import agreement
    from .routing import deciding_stage

    confidence = np.asarray(data["confidence"], dtype=float)[:, design.order]
    pred = np.asarray(data["pred"], dtype=object)[:, design.order]
    verdicts = np.isin(pred, ["a", "b"]) & np.isfinite(confidence)
    stage = deciding_stage(confidence, verdicts, calibrator.thresholds_)
    decided = stage >= 0
    final = np.where(decided, pred[np.arange(len(stage)), np.maximum(stage, 0)], None)
    agree, _ = agreement(final[decided], np.asarray(data["human_label"], dtype=object)[decided], tie_policy)
    rate = float(agree.mean()) if agree.size else float("nan")
    cost = None if costs is None else expected_cost(np.asarray(costs, dtype=float)[design.order],
                                                    reach_shares(stage, len(design.order)))
    return {"coverage": float(decided.mean()), "agreement": rate,
            "success": bool(agree.size == 0 or agree.sum() >= (1 - alpha) * agree.size - 1e-9),
            "expected_cost": cost}


def design_validity(data: dict, alpha: float, delta: float, *,
                    repetitions: int = ValidityOptions.repetitions,
                    design: str = "split", train_fraction: float = 0.4,
                    calibration_fraction: float = 0.5, seed: int = 0, fixed: bool = False,
                    **options) -> dict:
    """The validity study of the whole procedure: in each seeded repetition, a fresh design
    part (``train_fraction`` of the items), the design chosen on it, the calibration on a fresh
    calibration set, and the guarantee checked.

    ``split``: the rest is split into calibration (``calibration_fraction``) and test items;
    success is judged on the test items. ``population``: the rest is the population; a
    calibration set of the same size is drawn from it with replacement and success is judged
    on the whole population (DESIGN.md, "Validity study"). ``options`` go to
    :func:`design_and_calibrate` (order, delta_split, costs, n_grid, probability, tie_policy).
    ``fixed``: the procedure without a design, for comparison on the same draws (every judge
    in the given order, δ split equally, the fixed grid of ``n_grid`` points, the minimum-n
    rule; the training part is left unused). With ``data["groups"]``: the per-group procedure
    (``group_design.design_and_calibrate_groups``: a design per group on its own training rows,
    a threshold or cascade per group, δ split across groups), and success means *every* group's
    agreement on its decided items is at least 1 - alpha (``group_design.grouped_outcome``).
    """
    from .bounds import clopper_pearson_interval
    from .group_design import design_and_calibrate_groups, grouped_outcome

    n_items = len(data["human_label"])
    rng = np.random.default_rng(seed)
    take = lambda rows: {key: np.asarray(value)[rows] for key, value in data.items()}  # noqa: E731
    success, coverage, cost = [], [], []
    for _ in range(repetitions):
        order = rng.permutation(n_items)
        n_train = int(round(train_fraction * n_items))
        train, rest = order[:n_train], order[n_train:]
        n_calibration = int(round(calibration_fraction * rest.size))
        if design == "split":
            calibration, test = rest[:n_calibration], rest[n_calibration:]
        elif design == "population":
            calibration, test = rng.choice(rest, size=n_calibration, replace=True), rest
        else:
            raise ValueError(f"design must be 'split' or 'population', got {design!r}")
        calibration_data = take(calibration)
        if design == "population":  # draws with replacement: each draw its own id
            calibration_data["ids"] = np.array([f"draw-{i}" for i in range(calibration.size)])
        if "groups" in data:
            calibrator = design_and_calibrate_groups(take(train), calibration_data, alpha, delta,
                                                     fixed=fixed, **options)
            outcome = grouped_outcome(calibrator, take(test), alpha, options.get("tie_policy", "drop"))
        elif fixed:
            calibrator, chosen = _fixed_cascade(calibration_data, alpha, delta, **options)
        else:
            calibrator, chosen = design_and_calibrate(take(train), calibration_data, alpha, delta,
                                                      **options)
        if "groups" not in data:
            outcome = cascade_outcome(calibrator, chosen, take(test), alpha,
                                      options.get("tie_policy", "drop"), options.get("costs"))
        success.append(outcome["success"])
        coverage.append(outcome["coverage"])
        cost.append(outcome["expected_cost"])
    n_success = int(np.sum(success))
    return {"design": design, "repetitions": repetitions, "alpha": alpha, "delta": delta,
            "success_rate": n_success / repetitions,
            "success_interval_95": list(clopper_pearson_interval(n_success, repetitions, 0.95)),
            "mean_coverage": float(np.mean(coverage)),
            "mean_cost": None if cost[0] is None else float(np.mean(cost))}


def _fixed_cascade(calibration: dict, alpha: float, delta: float, *,
                   n_grid: int = CalibrateConfig.n_grid,
                   tie_policy: str = CalibrateConfig.tie_policy, **_) -> tuple:
    """The undesigned procedure (every judge, given order, equal δ, fixed grid)."""
    from .cascade import CascadeCalibrator

    confidence = np.asarray(calibration["confidence"], dtype=float)
    pred = np.asarray(calibration["pred"], dtype=object)
    n_judges = confidence.shape[1]
    calibrator = CascadeCalibrator(alpha=alpha, delta=delta, n_grid=n_grid, tie_policy=tie_policy)
    calibrator.calibrate(confidence, pred, calibration["human_label"],
                         names=[str(j) for j in range(n_judges)])
    design = CascadeDesign(list(range(n_judges)), [], [1.0 / n_judges] * n_judges, float("nan"),
                           None, {"order_rule": "given", "delta_split_rule": "equal", "drop": False})
    return calibrator, design
