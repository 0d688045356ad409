"""Cascades: judges in order of cost, each deciding what the cheaper ones escalated.

Stage 1 is calibrated on every calibration item; stage l on the items that stages 1..l-1 did
not accept; what no stage accepts goes to humans. Stage l gets error level ``delta_l`` with
``sum(delta_l) = delta`` (``delta / L`` each by default), so by the union bound every stage's
guarantee holds together with probability at least ``1 - delta``, and then the agreement on
everything the cascade accepts — a mixture of the stages' accepted sets — is at least
``1 - alpha`` too. The split is written in the certificate.

A one-stage cascade is exactly :class:`SelectiveCalibrator` (tested).

Limit (stated in ``docs/guarantee.md``): stage l's calibration items are selected by earlier
thresholds that were themselves chosen on the same calibration set; the union-bound argument
treats those thresholds as given.

References
----------
.. [1] J. Jung, F. Brahman, Y. Choi, "Trust or Escalate", ICLR 2025 (Section 3, cascades).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..contracts import ASSUMPTIONS, TIE_POLICIES, Certificate, agreement
from .calibrator import (CalibrationResult, NotCalibratedError, SelectiveCalibrator, _grid_record,
                         _stage_record, calibration_inputs, check_alpha, check_calibrated_alpha,
                         check_delta, refuse_seen, tie_counts, verdict_mask)
from .config import CalibrateConfig
from .grid import ThresholdGrid
from .routing import Routing, deciding_stage, route, stage_matrix

__all__ = ["CascadeCalibrator", "DELTA_SPLITS"]

DELTA_SPLITS = {
    "equal": "delta / L for each of the L stages",
    "weights": "delta * w_l / sum(w) for given weights w (pass a sequence as delta_split)",
}


class CascadeCalibrator:
    """Calibrate a cascade of judges so that everything accepted meets one guarantee.

    Parameters
    ----------
    alpha : float in (0, 1), default=CalibrateConfig.alpha
        Tolerated disagreement rate for every stage (and hence for the whole cascade).
    delta : float in (0, 1), default=CalibrateConfig.delta
        Total error level, split across stages.
    delta_split : "equal" or sequence of positive float, default=CalibrateConfig.delta_split
        "equal": delta / L per stage; a sequence: weights, normalised to sum to delta.
    grid, n_grid, procedure, min_n, tie_policy
        As for :class:`SelectiveCalibrator`, used for every stage.
    stage_grids : sequence of (grid, min_n), optional
        One per stage, replacing ``grid`` and ``min_n`` for that stage: a design chosen on
        training rows (``calibrate.design``), each stage's thresholds and start its own.

    Attributes
    ----------
    stages_ : list of dict
        Per stage: name, delta, its :class:`CalibrationResult`, and how many items it saw.
    thresholds_ : ndarray of float, shape (L,)
    deltas_ : ndarray of float, shape (L,)
    coverage_ : float
        Share of calibration items some stage accepts.
    agreement_ : float
        Agreement on everything the cascade accepts (NaN if nothing).
    route_counts_ : ndarray of int, shape (L + 1,)
        Calibration items decided by each stage, then escalated (last entry).
    n_calibration_, n_used_, n_ties_dropped_ : int
        Calibration items given (ties included), those the tie policy kept, those it dropped.
    stage_names_ : list of str
        The judges, cheapest first (``calibrate(..., names=...)``).
    """

    def __init__(self, alpha=CalibrateConfig.alpha, delta=CalibrateConfig.delta,
                 delta_split=CalibrateConfig.delta_split, grid=None, n_grid=CalibrateConfig.n_grid,
                 procedure=CalibrateConfig.procedure, min_n=CalibrateConfig.min_n,
                 tie_policy=CalibrateConfig.tie_policy, stage_grids=None):
        self.alpha = alpha
        self.stage_grids = stage_grids
        self.delta = delta
        self.delta_split = delta_split
        self.grid = grid
        self.n_grid = n_grid
        self.procedure = procedure
        self.min_n = min_n
        self.tie_policy = tie_policy

    def _stage_deltas(self, n_stages: int) -> np.ndarray:
        delta = check_delta(self.delta)
        if isinstance(self.delta_split, str):
            if self.delta_split != "equal":
                raise ValueError(f"delta_split must be 'equal' or a sequence of {n_stages} positive "
                                 f"weights, got {self.delta_split!r}")
            return np.full(n_stages, delta / n_stages)
        weights = np.asarray(self.delta_split, dtype=float).ravel()
        if weights.size != n_stages or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
            raise ValueError(f"delta_split weights must be {n_stages} positive numbers, got "
                             f"{list(self.delta_split)!r}")
        return delta * weights / weights.sum()

    def calibrate(self, confidence, pred, human_label, *, ids=None, names=None, provenance=None
                  ) -> "CascadeCalibrator":
        """Calibrate every stage in cost order.

        Parameters
        ----------
        confidence : array-like of float, shape (n_items, L), or a list of L arrays (n_items,)
            One column per judge, cheapest first, all for the same items in the same order
            (shape (n_items,): one judge).
        pred : the same shape, "a"/"b"
            A stage without a verdict on an item (None) never accepts it: the item moves on to
            the next stage, as at deployment (see ``SelectiveCalibrator.calibrate``).
        human_label : array-like of str, shape (n_items,)
        ids : array-like of str, optional
        names : sequence of L str, optional
            The judges' names (default "judge1".."judgeL"), recorded in the certificate.
        provenance : dict, optional
            Rows that shaped what the result relies on; calibration ids among them are refused
            (``SelectiveCalibrator.calibrate``).

        Returns
        -------
        self
        """
        alpha = check_alpha(self.alpha)
        if len(alpha) != 1:
            raise ValueError("a cascade takes one alpha; calibrate one cascade per alpha")
        if self.tie_policy not in TIE_POLICIES:
            raise ValueError(f"tie_policy must be one of {sorted(TIE_POLICIES)}, got {self.tie_policy!r}")
        names, confidence, pred, human_label, ids = calibration_inputs(
            confidence, pred, human_label, ids, names)
        n_items = len(human_label)
        refuse_seen(provenance, ids, n_items)
        parsed = [(name, confidence[:, l], pred[:, l], verdict_mask(pred[:, l]))
                  for l, name in enumerate(names)]
        deltas = self._stage_deltas(len(parsed))

        # items the tie policy keeps (the same for every stage: it depends on the label only)
        _, usable = agreement(np.full(n_items, "a", dtype=object), human_label, self.tie_policy)
        confidences = np.stack([confidence for _, confidence, _, _ in parsed], axis=1)
        verdicts = np.stack([has_verdict for *_, has_verdict in parsed], axis=1)
        remaining = np.ones(n_items, dtype=bool)
        records, thresholds, stage_grids = [], [], []
        if self.stage_grids is not None and len(self.stage_grids) != len(parsed):
            raise ValueError(f"stage_grids has {len(self.stage_grids)} entries for {len(parsed)} stages")
        for position, (name, confidence, pred, has_verdict) in enumerate(parsed):
            grid, min_n = (self.grid, self.min_n) if self.stage_grids is None else self.stage_grids[position]
            calibrator = SelectiveCalibrator(alpha=alpha[0], delta=float(deltas[position]),
                                             grid=grid, n_grid=self.n_grid,
                                             procedure=self.procedure, min_n=min_n,
                                             tie_policy=self.tie_policy)
            n_seen = int(remaining.sum())
            if not np.any(remaining & usable):  # nothing left to calibrate on: accept nothing
                result = None
                threshold = float("inf")
            else:
                calibrator.calibrate(confidence[remaining], pred[remaining], human_label[remaining],
                                     ids=None if ids is None else ids[remaining], names=[name])
                result = calibrator.results_[0]
                threshold = result.threshold
                self.grid_ = calibrator.grid_
                stage_grids.append(calibrator.grid_)
            thresholds.append(threshold)
            decided_by = deciding_stage(confidences[:, :position + 1], verdicts[:, :position + 1],
                                        np.array(thresholds))
            accepted = decided_by == position
            remaining = decided_by < 0
            records.append({"name": name, "delta": float(deltas[position]), "result": result,
                            "n_seen": n_seen, "n_decided": int(accepted.sum())})

        if not hasattr(self, "grid_"):
            raise ValueError("no stage had calibration items")
        if self.stage_grids is not None:  # every stage's thresholds, so each λ̂ lies on the grid
            self.grid_ = ThresholdGrid(np.concatenate([np.asarray(g) for g in stage_grids]),
                                       kind=stage_grids[0].kind)
            for record, (grid, min_n) in zip(records, self.stage_grids):
                record["grid"] = {"kind": grid.kind, "n_points": int(np.size(grid)),
                                  "start": float(np.asarray(grid)[0]), "min_n": min_n}
        # overall agreement: each item judged by its deciding stage's verdict
        final_pred = np.full(n_items, None, dtype=object)
        for position, (_, _, pred, _) in enumerate(parsed):
            final_pred[decided_by == position] = pred[decided_by == position]
        accepted_any = decided_by >= 0
        agree, kept = agreement(final_pred[accepted_any], human_label[accepted_any], self.tie_policy)
        self.stages_ = records
        self.thresholds_ = np.array(thresholds, dtype=float)
        self.deltas_ = deltas
        self.alpha_ = alpha[0]
        self.n_calibration_ = n_items
        self.n_used_, self.n_ties_dropped_ = tie_counts(human_label, self.tie_policy)
        self.coverage_ = float(accepted_any.mean()) if n_items else 0.0
        self.agreement_ = float(agree.mean()) if agree.size else float("nan")
        self.route_counts_ = np.array([int((decided_by == s).sum()) for s in range(len(parsed))]
                                      + [int((decided_by < 0).sum())])
        self.stage_names_ = [name for name, *_ in parsed]
        return self

    def _check_calibrated(self) -> None:
        if not hasattr(self, "stages_"):
            raise NotCalibratedError("This CascadeCalibrator is not calibrated yet: call "
                                     "calibrate(confidence, pred, human_label) first")

    def route(self, confidence, pred) -> Routing:
        """Which stage decides each item: the first whose threshold its confidence reaches and
        that gave it a verdict (``calibrate.routing``, the rule ``apply`` uses too).

        Parameters
        ----------
        confidence : list of L array-likes of shape (n_items,), one per stage, or an ndarray of
            shape (n_items, L)
        pred : the same shapes; each stage's verdict, "a" or "b" (None: no verdict, never
            accepted)

        Returns
        -------
        Routing
            ``stage``: index of the deciding stage, or -1 (escalate to humans); ``verdict``.
        """
        self._check_calibrated()
        matrix, verdicts = stage_matrix(confidence, float), stage_matrix(pred, object)
        if matrix.shape[1] != len(self.thresholds_) or verdicts.shape[1] != len(self.thresholds_):
            raise ValueError(f"route needs one confidence and one pred array per stage "
                             f"({len(self.thresholds_)}), got {matrix.shape[1]} and "
                             f"{verdicts.shape[1]}")
        if verdicts.shape != matrix.shape:
            raise ValueError(f"confidences {matrix.shape[::-1]} and preds {verdicts.shape[::-1]} "
                             "must have the same shape")
        for column in verdicts.T:
            verdict_mask(column)  # refuse a verdict other than "a", "b" or None
        return route(self.thresholds_, matrix, verdicts)

    def certificate(self, data_hash: str, *, confidence_names: Sequence[str] | None = None,
                    model_hash: str | None = None, extra: dict | None = None, alpha=None
                    ) -> Certificate:
        """The cascade's certificate: one stage record per judge, the delta split, coverage
        (the calibrators' shared ``certificate``; ``alpha``, if given, must be the one
        calibrated). Unbound and without provenance: ``calibrate.certify`` binds it."""
        from .. import __version__

        self._check_calibrated()
        check_calibrated_alpha(alpha, self.alpha_)
        names = confidence_names or ["confidence"] * len(self.stages_)
        stage_records = []
        for record, confidence_name in zip(self.stages_, names):
            result: CalibrationResult | None = record["result"]
            if result is None:  # nothing was left for this stage
                entry = {"name": record["name"], "confidence": confidence_name,
                         "threshold": float("inf"), "n": 0, "k": 0, "upper_bound": 1.0,
                         "coverage": 0.0, "agreement": None, "delta": record["delta"],
                         "abstains": True}
            else:
                entry = _stage_record(record["name"], confidence_name, result, record["delta"])
            entry.update(n_seen=record["n_seen"], n_decided=record["n_decided"])
            if "grid" in record:
                entry["grid"] = record["grid"]
            stage_records.append(entry)
        split = (f"equal: delta / {len(self.stages_)} per stage" if isinstance(self.delta_split, str)
                 else f"weights {list(map(float, self.delta_split))} normalised to sum to delta")
        details = {"n_used": self.n_used_, "n_ties_dropped": self.n_ties_dropped_,
                   "route_counts": self.route_counts_.tolist(),
                   "stage_deltas": self.deltas_.tolist(),
                   "cascade_note": "stage l is calibrated on the items stages before it did not accept"}
        details.update(extra or {})
        return Certificate(
            alpha=self.alpha_, delta=check_delta(self.delta), procedure=self.procedure,
            tie_policy=self.tie_policy, grid=_grid_record(self.grid_), stages=stage_records,
            delta_split=split, coverage=self.coverage_, n_calibration=self.n_calibration_,
            agreement_on_accepted=None if np.isnan(self.agreement_) else self.agreement_,
            data_hash=data_hash, model_hash=model_hash, assumptions=list(ASSUMPTIONS),
            version=__version__, extra=details)
