"""The selective calibrator: pick a certified confidence threshold for one judge.

Usage, in three steps (scikit-learn style):

1. ``calibrator = SelectiveCalibrator(alpha=0.1, delta=0.1)`` — only stores the settings;
2. ``calibrator.calibrate(confidence, pred, human_label)`` — returns ``self`` and sets
   ``threshold_``, ``upper_bound_``, ``n_``, ``k_``, ``coverage_``, ``agreement_``, ``results_``;
3. ``calibrator.route(new_confidence, new_pred)`` — which new verdicts to keep; the rest are
   escalated. ``calibrator.certificate(data_hash)`` records everything needed to check the result.

The three calibrators (this one, ``CascadeCalibrator``, ``GroupedCalibrator``) share one
interface: ``calibrate(confidence, pred, human_label, *, ids=None, names=None,
provenance=None)`` (``GroupedCalibrator`` adds ``groups=``), ``route(confidence, pred)`` returning
a :class:`~marc_ray.calibrate.routing.Routing` (``GroupedCalibrator``: ``groups=`` again), and
``certificate(data_hash, *, confidence_names=None, model_hash=None, extra=None, alpha=None)``.
``confidence`` and ``pred`` are of shape (n,), (n, L) or a list of L arrays of shape (n,), one
column per judge, cheapest first; ``names`` names the L judges. Each sets ``n_calibration_``
(items given, ties included), ``n_used_`` (after the tie policy), ``n_ties_dropped_``,
``coverage_``, ``agreement_`` and ``stage_names_``.

The guarantee (``docs/guarantee.md``): with probability at least ``1 - delta`` over the draw
of the calibration set, the judge agrees with the humans on at least ``1 - alpha`` of the
items it accepts. Several alphas can be calibrated in one call (``alpha=[0.05, 0.1, 0.2]``):
the data are counted once and each alpha gets its own result; each result carries its own
``1 - delta`` guarantee (they are not simultaneous; for that, divide delta by their number).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..contracts import ASSUMPTIONS, PREDICTIONS, TIE_POLICIES, Certificate, agreement
from .config import CalibrateConfig
from .grid import ThresholdGrid, as_grid, check_grid_independent, counts_at_thresholds
from .bounds import clopper_pearson_upper
from .testing import PROCEDURES, check_procedure, select_thresholds, threshold_records
from ..metrics import as_confidence_and_agreement
from .routing import Routing, deciding_stage, route, stage_matrix

__all__ = ["SelectiveCalibrator", "CalibrationResult", "NotCalibratedError", "check_alpha",
           "check_delta", "calibrate_counts", "calibration_inputs"]


class NotCalibratedError(ValueError, AttributeError):
    """Raised when a calibrator is used before ``calibrate`` (as scikit-learn's NotFittedError)."""


def check_delta(delta) -> float:
    if isinstance(delta, bool) or not isinstance(delta, (int, float, np.floating, np.integer)) \
            or not 0 < float(delta) < 1:
        raise ValueError(f"delta must be a number in (0, 1), got {delta!r} "
                         "(e.g. 0.1: the guarantee holds with probability 0.9)")
    return float(delta)


def check_alpha(alpha) -> tuple[float, ...]:
    """One alpha or a sequence of them, each in (0, 1)."""
    values = [alpha] if np.ndim(alpha) == 0 else list(np.asarray(alpha).ravel())
    if not values:
        raise ValueError("alpha is empty; give at least one value in (0, 1)")
    checked = []
    for value in values:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating, np.integer)) \
                or not 0 < float(value) < 1:
            raise ValueError(f"alpha must be a number in (0, 1) (or a list of them), got {value!r} "
                             "(e.g. 0.1: at least 90% agreement on accepted items)")
        checked.append(float(value))
    return tuple(checked)


@dataclass
class CalibrationResult:
    """The outcome for one alpha.

    Attributes
    ----------
    alpha, delta : float
    procedure : str
    threshold : float
        Accept items with confidence >= threshold; ``inf`` when nothing could be certified.
    index : int
        Position of the threshold in the descending grid (-1: nothing accepted).
    n, k : int
        Calibration items accepted at the threshold and disagreements among them.
    upper_bound : float
        Clopper–Pearson upper bound on the disagreement rate at the threshold, at the level
        the procedure tested it (1.0 when nothing is accepted).
    coverage : float
        Share of all calibration items (ties included) with confidence >= threshold.
    agreement : float
        Agreement on the accepted calibration items (NaN when none).
    min_n : int
        The minimum-n rule in force.
    records : dict of lists
        Per grid threshold: threshold, n, k, upper_bound (computed on first access), p_value
        (exact binomial), level (the level it was tested at), tested, passed.
    """

    alpha: float
    delta: float
    procedure: str
    threshold: float
    index: int
    n: int
    k: int
    upper_bound: float
    coverage: float
    agreement: float
    min_n: int
    records: dict = field(repr=False)

    def upper_bounds(self) -> list:
        """Clopper–Pearson upper bound at every grid threshold (at its tested level)."""
        return self.records["upper_bound"]

    @property
    def abstains(self) -> bool:
        return self.index < 0

    def sentence(self) -> str:
        """The result in one plain sentence."""
        if self.abstains:
            return (f"No threshold could be certified for at least {1 - self.alpha:.0%} agreement "
                    f"with {1 - self.delta:.0%} confidence: every item is escalated.")
        return (f"With {1 - self.delta:.0%} confidence, the judge agrees with the human labels on at "
                f"least {1 - self.alpha:.0%} of the items whose confidence is >= {self.threshold:.4g}; "
                f"on the calibration set that is {self.coverage:.1%} of items ({self.n} items, "
                f"{self.k} disagreements, bound {self.upper_bound:.3f}).")


def calibrate_counts(grid, n, k, alphas: Sequence[float], delta: float, procedure: str,
                     min_n, coverage_of) -> list[CalibrationResult]:
    """Turn per-threshold counts into one :class:`CalibrationResult` per alpha.

    ``coverage_of(threshold)`` gives the coverage at a threshold (the caller knows the
    denominator: all items, ties included).
    """
    results = []
    for alpha in alphas:
        selection = select_thresholds(n, k, alpha, delta, procedure, min_n)
        records = threshold_records(grid, n, k, alpha, selection)
        index = int(selection.index)
        if index < 0:
            results.append(CalibrationResult(alpha, delta, procedure, float("inf"), -1, 0, 0, 1.0,
                                             0.0, float("nan"), selection.min_n, records))
            continue
        n_at, k_at = int(n[index]), int(k[index])
        threshold = float(grid[index])
        bound = clopper_pearson_upper(k_at, n_at, selection.level[index])
        results.append(CalibrationResult(
            alpha, delta, procedure, threshold, index, n_at, k_at, float(bound),
            float(coverage_of(threshold)), 1.0 - k_at / n_at, selection.min_n, records))
    return results


def refuse_seen(provenance, ids, n_items: int) -> None:
    """The calibrators' provenance check (``calibrate(..., provenance=...)``): refuse calibration
    ids that the provenance saw. ``calibrate.certify`` checks (or excludes) them before the
    calibrators run; this is the same refusal for a calibrator used on its own."""
    if not provenance:
        return
    if ids is None or len(ids) != n_items:
        raise ValueError("provenance is checked by id: pass ids=... (one per item) with it")
    from ..contracts.provenance import check_unseen

    check_unseen(provenance, ids, "<calibration data>", exclude_seen=False,
                 flag="certify(..., exclude_seen=True)")


def calibration_inputs(confidence, pred, human_label, ids, names):
    """The calibrators' shared inputs, checked (``calibrate(confidence, pred, human_label, *,
    ids, names)``, the same on all three).

    Returns
    -------
    names : list of str, one per judge (default "judge", or "judge1".."judgeL")
    confidence : ndarray of float, shape (n, L)
    pred : ndarray of object, shape (n, L); every entry "a", "b" or None (``verdict_mask``)
    human_label : ndarray of object, shape (n,)
    ids : ndarray of object, shape (n,), or None
    """
    confidence, pred = stage_matrix(confidence, float), stage_matrix(pred, object)
    human_label = np.asarray(human_label, dtype=object).ravel()
    if not (len(confidence) == len(pred) == len(human_label)) or pred.shape != confidence.shape:
        raise ValueError(f"confidence {confidence.shape}, pred {pred.shape} and human_label "
                         f"({len(human_label)},) must have the same length and one column per "
                         "judge")
    n_stages = confidence.shape[1]
    if n_stages == 0:
        raise ValueError("at least one stage (judge) is needed: confidence and pred have no column")
    if names is None:
        names = ["judge"] if n_stages == 1 else [f"judge{l + 1}" for l in range(n_stages)]
    names = [str(name) for name in ([names] if isinstance(names, str) else names)]
    if len(names) != n_stages or len(set(names)) != n_stages:
        raise ValueError(f"names must name each of the {n_stages} judges once, got {names}")
    for column in pred.T:
        verdict_mask(column)  # a verdict other than "a", "b" or None is refused
    if ids is not None:
        ids = np.asarray(ids, dtype=object).ravel()
        if ids.size != human_label.size:
            raise ValueError(f"ids ({ids.size}) and human_label ({human_label.size}) differ in length")
    return names, confidence, pred, human_label, ids


def check_calibrated_alpha(alpha, calibrated: float) -> None:
    """``certificate(..., alpha=...)`` on a one-alpha calibrator: None, or the alpha calibrated."""
    if alpha is not None and not np.isclose(float(alpha), calibrated, rtol=0, atol=1e-12):
        raise ValueError(f"alpha={alpha!r} was not calibrated; calibrated: [{calibrated}]")


def tie_counts(human_label, tie_policy: str) -> tuple[int, int]:
    """(items used, ties dropped) under the tie policy: the same for every judge and kind."""
    _, used = agreement(np.full(len(human_label), "a", dtype=object), human_label, tie_policy)
    return int(used.sum()), int(len(human_label) - used.sum())


def verdict_mask(pred) -> np.ndarray:
    """Which items have a verdict: pred "a" or "b" → True; None or NaN (no verdict) → False.

    Raises
    ------
    ValueError
        Any other value (a typo such as "A" would otherwise count as a silent disagreement).
    """
    pred = np.asarray(pred, dtype=object).ravel()
    has_verdict = np.isin(pred, PREDICTIONS)
    missing = np.array([p is None or (isinstance(p, float) and p != p) for p in pred], dtype=bool)
    unknown = ~has_verdict & ~missing
    if unknown.any():
        position = int(np.flatnonzero(unknown)[0])
        raise ValueError(f"pred must be 'a', 'b' or None (no verdict); got {pred[position]!r} "
                         f"at position {position}")
    return has_verdict


class SelectiveCalibrator:
    """Certify a confidence threshold above which a judge agrees with humans.

    Parameters
    ----------
    alpha : float or sequence of float in (0, 1), default=CalibrateConfig.alpha
        Tolerated disagreement rate among accepted items. A sequence calibrates each value
        from the same counts; the fitted attributes then become arrays of shape (n_alpha,).
    delta : float in (0, 1), default=CalibrateConfig.delta
        Error level: the guarantee holds with probability at least ``1 - delta``.
    grid : None, "fixed", array-like or ThresholdGrid, default=None
        Candidate thresholds. None / "fixed": ``fixed_grid(n_grid)`` on [0, 1]. An array is
        refused if it looks derived from the calibration confidences; use
        :func:`quantile_grid` on a disjoint split for a data-shaped grid.
    n_grid : int, default=CalibrateConfig.n_grid
        Size of the fixed grid.
    procedure : {"fixed_sequence", "bonferroni", "holm"}, default=CalibrateConfig.procedure
        Family-wise procedure, see ``PROCEDURES``.
    min_n : "auto" or int, default=CalibrateConfig.min_n
        Thresholds accepting fewer calibration items are skipped; "auto" is the smallest n at
        which a threshold can pass at all (22 for alpha = delta = 0.1).
    tie_policy : {"drop", "disagree"}, default=CalibrateConfig.tie_policy
        How items whose human label is a tie count (``marc_ray.contracts.TIE_POLICIES``).

    Attributes
    ----------
    threshold_ : float or ndarray of shape (n_alpha,)
        Certified threshold; ``inf`` when nothing is accepted.
    upper_bound_, coverage_, agreement_ : float or ndarray of shape (n_alpha,)
    n_, k_ : int or ndarray of shape (n_alpha,)
    results_ : list of CalibrationResult, one per alpha (with the per-threshold records)
    grid_ : ThresholdGrid, shape (G,)
    alphas_ : tuple of float
    n_calibration_ : int
        Calibration items given (ties included).
    n_ties_dropped_, n_used_ : int
        Items with a tied human label the tie policy dropped, and the items left.
    stage_names_ : list of one str
        The judge's name (``calibrate(..., names=...)``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> confidence = rng.uniform(0.5, 1.0, 5000)
    >>> agree = rng.random(5000) < confidence          # agreement grows with confidence
    >>> pred = np.full(5000, "a"); human = np.where(agree, "a", "b")
    >>> calibrator = SelectiveCalibrator(alpha=0.1, delta=0.1).calibrate(confidence, pred, human)
    >>> bool(calibrator.upper_bound_ <= 0.1), bool(0 < calibrator.coverage_ < 1)
    (True, True)

    References
    ----------
    .. [1] J. Jung, F. Brahman, Y. Choi, "Trust or Escalate: LLM Judges with Provable
       Guarantees for Human Agreement", ICLR 2025.
    """

    def __init__(self, alpha=CalibrateConfig.alpha, delta=CalibrateConfig.delta, grid=None,
                 n_grid=CalibrateConfig.n_grid, procedure=CalibrateConfig.procedure,
                 min_n=CalibrateConfig.min_n, tie_policy=CalibrateConfig.tie_policy):
        self.alpha = alpha
        self.delta = delta
        self.grid = grid
        self.n_grid = n_grid
        self.procedure = procedure
        self.min_n = min_n
        self.tie_policy = tie_policy

    # -- fitting ---------------------------------------------------------------------------

    def _validated(self) -> tuple[tuple[float, ...], float, ThresholdGrid]:
        alphas = check_alpha(self.alpha)
        delta = check_delta(self.delta)
        check_procedure(self.procedure)
        if self.tie_policy not in TIE_POLICIES:
            raise ValueError(f"tie_policy must be one of {sorted(TIE_POLICIES)}, got {self.tie_policy!r}")
        return alphas, delta, as_grid(self.grid, self.n_grid)

    def calibrate(self, confidence, pred, human_label, *, ids=None, names=None, provenance=None
                  ) -> "SelectiveCalibrator":
        """Calibrate on human-labelled items.

        Parameters
        ----------
        confidence : array-like of float, shape (n_items,) (or (n_items, 1))
        pred : array-like of str, shape (n_items,) (or (n_items, 1))
            The judge's verdicts, "a" or "b"; None where the judge gave no verdict (every run
            unreadable). Such an item is never accepted, as :mod:`marc_ray.apply` routes it (on
            to the next judge, or to humans), and its confidence (NaN allowed) is ignored. It
            stays in the calibration set rather than being dropped, so the coverage counts it
            and the items calibrated on are the items the rule will see.
        human_label : array-like of str, shape (n_items,)
            "a", "b" or "tie".
        ids : array-like of str, shape (n_items,), optional
            Item ids; checked against a quantile grid's source ids.
        names : sequence of one str, optional
            The judge's name (default "judge"), recorded in the certificate.
        provenance : dict, optional
            ``contracts.provenance`` records of rows that shaped what the result relies on
            (e.g. ``MarcConfidence.provenance_``); calibration ids among them are refused.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Bad parameters, inputs of different lengths, more than one judge (use
            ``CascadeCalibrator``), a verdict other than "a", "b" or None, a non-finite
            confidence on an item with a verdict, no item left after the tie policy, or a grid
            derived from the calibration scores.
        ContractError
            An id the provenance saw.
        """
        names, confidence, pred, human_label, ids = calibration_inputs(
            confidence, pred, human_label, ids, names)
        if confidence.shape[1] != 1:
            raise ValueError(f"SelectiveCalibrator certifies one judge; got {confidence.shape[1]} "
                             "columns (a cascade of judges: CascadeCalibrator)")
        confidence, pred = confidence[:, 0], pred[:, 0]
        self._validated()  # parameters first, so a bad alpha is reported before the data
        refuse_seen(provenance, ids, len(confidence))
        has_verdict = verdict_mask(pred)
        # -inf: below every threshold, so never accepted (what _fit allows, and NaN is not)
        confidence = np.where(has_verdict, confidence, -np.inf)
        agree, kept = agreement(pred, human_label, self.tie_policy)
        self.stage_names_ = names
        return self._fit(confidence[kept], agree, confidence, ids)

    def calibrate_agreement(self, confidence, agree, *, ids=None, provenance=None
                            ) -> "SelectiveCalibrator":
        """Calibrate from agreement indicators directly (ties already resolved).

        Parameters
        ----------
        confidence : array-like of float, shape (n_items,)
        agree : array-like of bool, shape (n_items,)
        ids : array-like of str, optional

        Returns
        -------
        self
        """
        confidence, agree = as_confidence_and_agreement(confidence, agree)
        refuse_seen(provenance, ids, len(confidence))
        self.stage_names_ = ["judge"]
        return self._fit(confidence, agree, confidence, ids)

    def _fit(self, confidence, agree, all_confidence, ids) -> "SelectiveCalibrator":
        alphas, delta, grid = self._validated()
        # -inf is allowed: "never accepted" (an item without a verdict, see calibrate)
        bad = np.isnan(all_confidence) | (all_confidence == np.inf)
        if bad.any():
            raise ValueError(f"confidence holds NaN or +inf values (first at position "
                             f"{int(np.flatnonzero(bad)[0])}); fix those items, or give them "
                             "pred=None if the judge gave no verdict")
        if confidence.size == 0:
            raise ValueError("no calibration items (after the tie policy "
                             f"{self.tie_policy!r}); label more items or use tie_policy='disagree'")
        if ids is not None and len(ids) != len(all_confidence):
            raise ValueError(f"ids ({len(ids)}) and confidence ({len(all_confidence)}) differ in length")
        check_grid_independent(grid, all_confidence, None if ids is None else np.asarray(ids))
        n, k = counts_at_thresholds(confidence, agree, grid)
        sorted_all = np.sort(all_confidence)

        def coverage_of(threshold: float) -> float:
            accepted = sorted_all.size - np.searchsorted(sorted_all, threshold, side="left")
            return accepted / sorted_all.size

        self.results_ = calibrate_counts(grid, n, k, alphas, delta, self.procedure, self.min_n,
                                         coverage_of)
        self.grid_ = grid
        self.alphas_ = alphas
        self.delta_ = delta
        self.n_calibration_ = int(all_confidence.size)
        self.n_used_ = int(confidence.size)
        self.n_ties_dropped_ = int(all_confidence.size - confidence.size)
        single = np.ndim(self.alpha) == 0

        def collect(name, dtype):
            values = np.array([getattr(result, name) for result in self.results_], dtype=dtype)
            return values[0].item() if single else values

        self.threshold_ = collect("threshold", float)
        self.upper_bound_ = collect("upper_bound", float)
        self.n_ = collect("n", np.int64)
        self.k_ = collect("k", np.int64)
        self.coverage_ = collect("coverage", float)
        self.agreement_ = collect("agreement", float)
        return self

    # -- using the result --------------------------------------------------------------------

    def _check_calibrated(self) -> None:
        if not hasattr(self, "results_"):
            raise NotCalibratedError("This SelectiveCalibrator is not calibrated yet: call "
                                     "calibrate(confidence, pred, human_label) first")

    def result(self, alpha=None) -> CalibrationResult:
        """The :class:`CalibrationResult` for ``alpha`` (optional when one alpha was given)."""
        self._check_calibrated()
        if alpha is None:
            if len(self.results_) > 1:
                raise ValueError(f"several alphas were calibrated {list(self.alphas_)}; "
                                 "say which one with alpha=...")
            return self.results_[0]
        for result in self.results_:
            if np.isclose(result.alpha, float(alpha), rtol=0, atol=1e-12):
                return result
        raise ValueError(f"alpha={alpha!r} was not calibrated; calibrated: {list(self.alphas_)}")

    def accept(self, confidence, alpha=None, *, pred=None) -> np.ndarray:
        """Which items the certified rule accepts (``calibrate.routing``: the confidence reaches
        ``threshold_`` and, when ``pred`` is given, the judge gave a verdict).

        Parameters
        ----------
        confidence : array-like of float, shape (n_items,)
        alpha : float, optional
            Which calibrated alpha to apply. Without it, a single-alpha calibrator returns
            shape (n_items,) and a multi-alpha one shape (n_alpha, n_items).
        pred : array-like of str or None, shape (n_items,), optional
            The judge's verdicts: an item without one ("a"/"b") is never accepted, as at
            deployment (``marc-ray apply``). Without it every item counts as having a verdict.

        Returns
        -------
        mask : ndarray of bool
            False everywhere when nothing was certified (threshold +inf).
        """
        self._check_calibrated()
        confidence = np.asarray(confidence, dtype=float).ravel()
        has_verdict = (np.ones(confidence.shape, dtype=bool) if pred is None
                       else verdict_mask(pred))
        if has_verdict.shape != confidence.shape:
            raise ValueError(f"pred ({has_verdict.size}) must have one entry per item "
                             f"({confidence.size})")
        single = alpha is not None or len(self.results_) == 1
        results = [self.result(alpha)] if single else self.results_
        thresholds = np.array([[result.threshold] for result in results])  # (n_alpha, 1 stage)
        accepted = deciding_stage(confidence[:, None], has_verdict[:, None], thresholds) == 0
        return accepted[0] if single else accepted

    def route(self, confidence, pred) -> Routing:
        """Which items the certified rule decides (the calibrators' one ``route``: stage 0 or -1,
        escalated), with their verdicts; one alpha must have been calibrated.

        Parameters
        ----------
        confidence, pred : array-like of shape (n_items,) (or (n_items, 1))
        """
        result = self.result()
        matrix, verdicts = stage_matrix(confidence, float), stage_matrix(pred, object)
        if matrix.shape[1] != 1 or verdicts.shape != matrix.shape:
            raise ValueError(f"a single judge routes (n_items,) arrays; got confidence "
                             f"{matrix.shape} and pred {verdicts.shape}")
        verdict_mask(verdicts[:, 0])
        return route(np.array([result.threshold]), matrix, verdicts)

    def certificate(self, data_hash: str, *, confidence_names=None, model_hash: str | None = None,
                    extra: dict | None = None, alpha=None) -> Certificate:
        """The certificate of one calibrated alpha (:class:`marc_ray.contracts.Certificate`).

        Parameters
        ----------
        data_hash : str
            Hash of the calibration data (``marc_ray.contracts.table_hash``).
        confidence_names : sequence of one str, optional
            The confidence measure (column name or model description); default "confidence".
        model_hash : str, optional
            Hash of the confidence model's weights, if learned.
        extra : dict, optional
            Merged into the certificate's ``extra``.
        alpha : float, optional
            Required when several alphas were calibrated.

        The judge is named by ``calibrate(..., names=...)``. The certificate is unbound and
        carries no provenance: ``calibrate.certify`` binds it.
        """
        from .. import __version__
        from .wording import result_sentence

        (confidence_name,) = confidence_names or ["confidence"]
        judge_name = self.stage_names_[0] if hasattr(self, "stage_names_") else "judge"
        result = self.result(alpha)
        stage = _stage_record(judge_name, confidence_name, result)
        details = {"min_n": result.min_n, "n_used": self.n_used_,
                   "n_ties_dropped": self.n_ties_dropped_,
                   "procedure_description": PROCEDURES[self.procedure],
                   "per_threshold": result.records.complete(),
                   "sentence": result_sentence(result, self.n_calibration_, self.n_ties_dropped_,
                                               self.tie_policy)}
        details.update(extra or {})
        return Certificate(
            alpha=result.alpha, delta=result.delta, procedure=self.procedure,
            tie_policy=self.tie_policy, grid=_grid_record(self.grid_), stages=[stage],
            delta_split="none (single judge)", coverage=result.coverage,
            n_calibration=self.n_calibration_,
            agreement_on_accepted=None if result.abstains else result.agreement,
            data_hash=data_hash, model_hash=model_hash, assumptions=list(ASSUMPTIONS),
            version=__version__, extra=details)


def _grid_record(grid: ThresholdGrid) -> dict:
    record = grid.describe()
    if grid.source_ids is not None:
        record["n_source_ids"] = len(grid.source_ids)
    return record


def _stage_record(name: str, confidence_name: str, result: CalibrationResult,
                  delta: float | None = None) -> dict:
    return {"name": name, "confidence": confidence_name, "threshold": result.threshold,
            "n": result.n, "k": result.k, "upper_bound": result.upper_bound,
            "coverage": result.coverage,
            "agreement": None if result.abstains else result.agreement,
            "delta": result.delta if delta is None else delta, "min_n": result.min_n,
            "abstains": result.abstains}
