"""Per-context certificates: one certified threshold (or cascade) per group of items.

The same judge can be trustworthy on one kind of input and not another. With a group column
(a task category, a dataset, a language) the calibration items are split by group and each
group ``g`` gets its own threshold, certified on that group's items alone at error level
``delta_g``, with ``sum_g delta_g = delta`` (``delta / G`` each by default, the union bound).
Then, with probability at least ``1 - delta``, *every* group's guarantee holds together:
agreement on the accepted items of group ``g`` is at least ``1 - alpha`` for every ``g``, and
so on everything accepted (a mixture of the groups' accepted sets).

* Cascades compose: group ``g``'s cascade of ``L`` judges splits its ``delta_g`` across its
  stages (:class:`CascadeCalibrator` with ``delta = delta_g``), so the union bound covers
  every (group, stage) pair: ``sum_g sum_l delta_{g,l} = delta``.
* A group too small to certify anything abstains (threshold ``inf``: its items are
  escalated); :attr:`GroupedCalibrator.labels_needed_` says how many labelled items it would
  need at its observed disagreement rate.
* At deployment an item whose group never appeared in calibration is escalated
  (:func:`route_by_group` marks it), since no guarantee was certified for it.

What it costs: the group's labels only, at a smaller ``delta_g`` (the minimum accepted
items to certify anything grows like ``ln(G / delta) / alpha``; ``docs/guarantee.md``).

References
----------
.. [1] J. Jung, F. Brahman, Y. Choi, "Trust or Escalate", ICLR 2025 (the per-judge procedure).
.. [2] C. E. Bonferroni, "Teoria statistica delle classi e calcolo delle probabilità", 1936
   (the union bound); cf. Mondrian / group-conditional conformal prediction (Vovk et al., 2003).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..contracts import Certificate, agreement
from .bounds import n_needed_at_rate
from .calibrator import (NotCalibratedError, calibration_inputs, check_alpha,
                         check_calibrated_alpha, check_delta, refuse_seen, tie_counts, verdict_mask)
from .config import CalibrateConfig
from .cascade import CascadeCalibrator
from .routing import ESCALATE, Routing, route, stage_matrix
__all__ = ["GroupedCalibrator", "route_by_group", "group_deltas",
           "labels_needed", "groups_record", "thresholds_from_record", "thresholds_per_item"]



# how delta is split across groups unless weights are given: delta / G each (the union bound).
# Not CalibrateConfig.delta_split, which splits a cascade's delta across its stages.
EQUAL_ACROSS_GROUPS = "equal"


def group_deltas(groups: Sequence[str], delta: float,
                 delta_split=EQUAL_ACROSS_GROUPS) -> dict[str, float]:
    """Split ``delta`` across groups: ``"equal"`` (``delta / G``) or a {group: weight} mapping."""
    delta = check_delta(delta)
    groups = list(groups)
    if isinstance(delta_split, str):
        if delta_split != "equal":
            raise ValueError(f"delta_split must be 'equal' or a mapping group -> positive weight, "
                             f"got {delta_split!r}")
        return {g: delta / len(groups) for g in groups}
    weights = {g: float(delta_split.get(g, np.nan)) for g in groups}
    bad = [g for g, w in weights.items() if not np.isfinite(w) or w <= 0]
    if bad:
        raise ValueError(f"delta_split needs a positive weight for every group; missing or bad: {bad}")
    total = sum(weights.values())
    return {g: delta * w / total for g, w in weights.items()}


def labels_needed(confidence, agree, alpha: float, delta: float, share: float = 0.5) -> dict:
    """How many labelled items a group would need to certify ``alpha`` at level ``delta``.

    The group's hope is to accept its most confident items: its observed disagreement rate is
    taken on the most confident ``share`` of its labelled items; ``n_accepted`` is the fewest
    accepted items certifying ``alpha`` at that rate (:func:`n_needed_at_rate`) and
    ``n_labelled = ceil(n_accepted / share)`` the labelled items that would yield them.
    Both ``inf`` when that rate is already ``>= alpha``.
    """
    confidence = np.asarray(confidence, dtype=float)
    agree = np.asarray(agree, dtype=bool)
    if agree.size == 0:
        rate = float("nan")
        accepted = n_needed_at_rate(0.0, alpha, delta)
    else:
        top = np.argsort(-confidence, kind="stable")[:max(1, int(np.ceil(share * agree.size)))]
        rate = float(1 - agree[top].mean())
        accepted = n_needed_at_rate(rate, alpha, delta)
    labelled = float(np.ceil(accepted / share)) if np.isfinite(accepted) else float("inf")
    return {"observed_disagreement": rate, "n_accepted": accepted, "n_labelled": labelled,
            "share": share, "delta": delta}


def route_by_group(thresholds: Mapping[str, Sequence[float]], groups, confidence, pred
                   ) -> Routing:
    """Route items through their group's stages (pure; the grouped twin of ``apply.route``).

    Parameters
    ----------
    thresholds : mapping group -> sequence of float, each of length n_stages
        The certified thresholds of each group's stages (``inf``: that stage accepts nothing).
    groups : array-like of str, shape (n,)
    confidence : ndarray of float, shape (n,) or (n, n_stages)
        NaN (not judged, unreadable) is never accepted.
    pred : ndarray of object, shape (n,) or (n, n_stages)
        "a" / "b"; None: no verdict, never accepted.

    Returns
    -------
    Routing
        Items of a group missing from ``thresholds`` are escalated with ``unseen`` True.
    """
    confidence = np.asarray(confidence, dtype=float)
    pred = np.asarray(pred, dtype=object)
    if confidence.ndim == 1:
        confidence, pred = confidence[:, None], pred[:, None]
    groups = np.asarray(groups, dtype=object).ravel()
    n_items, n_stages = confidence.shape
    if pred.shape != confidence.shape or groups.size != n_items:
        raise ValueError(f"confidence {confidence.shape}, pred {pred.shape} and groups "
                         f"({groups.size},) must describe the same (n_items, n_stages) items")
    _, unseen = thresholds_per_item(thresholds, groups, n_stages)
    # each group's items go through the one routing rule with that group's thresholds;
    # an unseen group's items stay escalated
    stage = np.full(n_items, -1, dtype=int)
    verdict = np.full(n_items, ESCALATE, dtype=object)
    for group, group_thresholds in thresholds.items():
        members = groups == group
        if members.any():
            routed = route(np.asarray(group_thresholds, dtype=float), confidence[members],
                           pred[members])
            stage[members], verdict[members] = routed.stage, routed.verdict
    return Routing(stage=stage, verdict=verdict, unseen=unseen)


def thresholds_per_item(thresholds: Mapping[str, Sequence[float]], groups, n_stages: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Each item's group thresholds, shape (n, n_stages), and which groups are unseen (n,).

    An item whose group is not in ``thresholds`` (or is None) gets ``inf`` at every stage.
    """
    groups = np.asarray(groups, dtype=object).ravel()
    table = {str(g): np.asarray(t, dtype=float).ravel() for g, t in thresholds.items()}
    for g, values in table.items():
        if values.size != n_stages:
            raise ValueError(f"group {g!r} has {values.size} thresholds for {n_stages} stages")
    names = list(table)
    lookup = {g: i for i, g in enumerate(names)}
    index = np.array([lookup.get(str(g), -1) if g is not None else -1 for g in groups], dtype=np.int64)
    unseen = index < 0
    matrix = np.vstack([table[g] for g in names] + [np.full(n_stages, np.inf)])
    return matrix[np.where(unseen, len(names), index)], unseen


class GroupedCalibrator:
    """Certify one threshold (or one cascade) per group, with delta split across groups.

    Parameters
    ----------
    alpha : float in (0, 1), default=CalibrateConfig.alpha
        Tolerated disagreement rate, the same for every group.
    delta : float in (0, 1), default=CalibrateConfig.delta
        Total error level: every group's guarantee holds together with probability 1 - delta.
    delta_split : "equal" or mapping group -> positive weight, default=EQUAL_ACROSS_GROUPS
        How delta is split across groups (the union bound): delta / G, or by weights.
    stage_split : "equal" or sequence of positive float, default=CalibrateConfig.delta_split
        For cascades: how each group's delta_g is split across its stages
        (``CascadeCalibrator.delta_split``).
    grid, n_grid, procedure, min_n, tie_policy
        As for :class:`SelectiveCalibrator`, used in every group.
    group_designs : mapping group -> dict, optional
        Per-group designs chosen on each group's training rows (``group_design.design_groups``):
        ``{"delta_split", "stage_grids", "record"}``; a group's ``stage_grids`` replace
        ``grid`` and ``min_n`` there and its ``delta_split`` replaces ``stage_split`` (None:
        that group keeps the fixed procedure). The record goes into the group's certificate.
    by : str, default="group"
        The group column's name, recorded in the certificate (``groups["column"]``) and the
        name ``apply`` reads each item's group from.

    Attributes
    ----------
    groups_ : tuple of str
        The calibration groups, sorted.
    deltas_ : dict group -> float
    thresholds_ : dict group -> ndarray of float, shape (n_stages,)
        ``inf`` where a stage accepts nothing (every stage ``inf``: the group abstains).
    calibrators_ : dict group -> CascadeCalibrator or None (None: no usable item)
    group_n_calibration_, group_coverage_, group_agreement_ : dict group -> int / float
    abstains_ : dict group -> bool
    labels_needed_ : dict group -> dict (see :func:`labels_needed`; for abstaining groups)
    n_calibration_, n_used_, n_ties_dropped_ : int
        Over all groups, as on the other calibrators.
    coverage_, agreement_ : float
        Over all groups: the share of calibration items some group's stage decides, and the
        agreement on them.
    stage_names_ : list of str
    """

    def __init__(self, alpha=CalibrateConfig.alpha, delta=CalibrateConfig.delta,
                 delta_split=EQUAL_ACROSS_GROUPS, stage_split=CalibrateConfig.delta_split,
                 grid=None, n_grid=CalibrateConfig.n_grid, procedure=CalibrateConfig.procedure,
                 min_n=CalibrateConfig.min_n, tie_policy=CalibrateConfig.tie_policy,
                 group_designs=None, by="group"):
        self.group_designs = group_designs
        self.by = by
        self.alpha = alpha
        self.delta = delta
        self.delta_split = delta_split
        self.stage_split = stage_split
        self.grid = grid
        self.n_grid = n_grid
        self.procedure = procedure
        self.min_n = min_n
        self.tie_policy = tie_policy

    def calibrate(self, confidence, pred, human_label, *, groups, ids=None, names=None,
                  provenance=None) -> "GroupedCalibrator":
        """Calibrate a threshold (one judge) or a cascade (several) per group.

        Parameters
        ----------
        confidence, pred, human_label, ids, names, provenance
            As for :meth:`CascadeCalibrator.calibrate` (one column: one judge, where each
            group's one-stage cascade is exactly :class:`SelectiveCalibrator`).
        groups : array-like of str, shape (n_items,)
            Each item's group. None is refused (name a group for every calibration item).

        Returns
        -------
        self
        """
        (alpha,) = check_alpha(self.alpha)
        stage_names, confidence, pred, human_label, ids = calibration_inputs(
            confidence, pred, human_label, ids, names)
        groups = np.asarray(groups, dtype=object).ravel()
        refuse_seen(provenance, ids, human_label.size)
        if groups.size != human_label.size:
            raise ValueError(f"groups ({groups.size}) and human_label ({human_label.size}) differ in length")
        missing = np.flatnonzero(np.equal(groups, None))
        if missing.size:
            raise ValueError(f"group is missing at position {int(missing[0])}; every calibration "
                             "item needs a group")
        groups = groups.astype(str)
        names = tuple(sorted(set(groups.tolist())))
        deltas = group_deltas(names, self.delta, self.delta_split)
        parsed = [(name, confidence[:, l], pred[:, l]) for l, name in enumerate(stage_names)]
        self.stage_names_ = stage_names
        self.calibrators_, self.thresholds_, self.labels_needed_ = {}, {}, {}
        self.group_n_calibration_, self.group_coverage_, self.group_agreement_ = {}, {}, {}
        self.abstains_ = {}
        decided_agree = []
        for g in names:
            rows = groups == g
            designed = (self.group_designs or {}).get(g) or {}
            split = self.stage_split if designed.get("stage_grids") is None else designed["delta_split"]
            cascade = CascadeCalibrator(alpha=alpha, delta=deltas[g], delta_split=split,
                                        grid=self.grid, n_grid=self.n_grid, procedure=self.procedure,
                                        min_n=self.min_n, tie_policy=self.tie_policy,
                                        stage_grids=designed.get("stage_grids"))
            _, usable = agreement(np.full(rows.sum(), "a", dtype=object), human_label[rows], self.tie_policy)
            if usable.any():
                cascade.calibrate(confidence[rows], pred[rows], human_label[rows],
                                  ids=None if ids is None else ids[rows], names=stage_names)
                thresholds = cascade.thresholds_
                self.group_coverage_[g] = cascade.coverage_
                self.group_agreement_[g] = cascade.agreement_
                routing = route_by_group({g: thresholds}, groups[rows], confidence[rows], pred[rows])
                agree_g, _ = agreement(routing.verdict[routing.accepted],
                                       human_label[rows][routing.accepted], self.tie_policy)
                decided_agree.append(agree_g)
            else:
                cascade = None
                thresholds = np.full(len(parsed), np.inf)
                self.group_coverage_[g], self.group_agreement_[g] = 0.0, float("nan")
            self.calibrators_[g] = cascade
            self.thresholds_[g] = np.asarray(thresholds, dtype=float)
            self.group_n_calibration_[g] = int(rows.sum())
            self.abstains_[g] = bool(np.all(np.isinf(self.thresholds_[g])))
            if self.abstains_[g]:
                first_conf, first_pred = parsed[0][1][rows], parsed[0][2][rows]
                with_verdict = verdict_mask(first_pred)
                agree_first, kept = agreement(first_pred[with_verdict], human_label[rows][with_verdict],
                                              self.tie_policy)
                self.labels_needed_[g] = labels_needed(first_conf[with_verdict][kept], agree_first,
                                                       alpha, deltas[g] / len(parsed))
        self.groups_ = names
        self.deltas_ = deltas
        self.alpha_ = alpha
        n_total = groups.size
        self.n_calibration_ = int(n_total)
        self.n_used_, self.n_ties_dropped_ = tie_counts(human_label, self.tie_policy)
        self.coverage_ = (sum(self.group_coverage_[g] * self.group_n_calibration_[g] for g in names)
                          / n_total if n_total else 0.0)
        pooled = np.concatenate(decided_agree) if decided_agree else np.array([], dtype=bool)
        self.agreement_ = float(pooled.mean()) if pooled.size else float("nan")
        return self

    def _check_calibrated(self) -> None:
        if not hasattr(self, "thresholds_"):
            raise NotCalibratedError("This GroupedCalibrator is not calibrated yet: call "
                                     "calibrate(confidence, pred, human_label, groups=...) first")

    def route(self, confidence, pred, *, groups) -> Routing:
        """Which stage decides each item (:func:`route_by_group` with this calibrator's
        thresholds): the calibrators' one ``route`` (``confidence`` and ``pred`` of shape (n,),
        (n, L) or a list of L per-stage arrays), plus the items' ``groups``."""
        self._check_calibrated()
        return route_by_group(self.thresholds_, groups, stage_matrix(confidence, float),
                              stage_matrix(pred, object))

    def accept(self, confidence, *, groups, pred=None) -> np.ndarray:
        """One judge: which items their group's certified threshold accepts (unseen: none; an
        item without a verdict in ``pred``, when given: none), as ``SelectiveCalibrator.accept``."""
        self._check_calibrated()
        confidence = np.asarray(confidence, dtype=float).ravel()
        verdicts = np.full(confidence.size, "a", dtype=object) if pred is None else pred
        return self.route(confidence, verdicts, groups=groups).accepted

    def groups_record(self, column: str, confidence_names: Sequence[str] | None = None) -> dict:
        """The per-group part of a certificate (see :func:`groups_record`)."""
        self._check_calibrated()
        return groups_record(self, column, confidence_names)

    def certificate(self, data_hash: str, *, confidence_names: Sequence[str] | None = None,
                    model_hash: str | None = None, extra: dict | None = None, alpha=None
                    ) -> Certificate:
        """A certificate whose ``groups`` field holds every group's thresholds (its column is
        ``by``); the calibrators' shared ``certificate``. Unbound and without provenance:
        ``calibrate.certify`` binds it.

        The top-level ``stages`` name the judges with threshold ``inf``: a router that ignores
        ``groups`` escalates everything (fails safe) rather than applying a wrong threshold.
        """
        from .. import __version__
        from ..contracts import ASSUMPTIONS

        self._check_calibrated()
        check_calibrated_alpha(alpha, self.alpha_)
        record = self.groups_record(self.by, confidence_names)
        names = confidence_names or ["confidence"] * len(self.stage_names_)
        stages = [{"name": n, "confidence": c, "threshold": float("inf"), "grouped": True,
                   "note": "per-group thresholds are in the certificate's groups field"}
                  for n, c in zip(self.stage_names_, names)]
        first = next((c for c in self.calibrators_.values() if c is not None), None)
        from .calibrator import _grid_record

        agreement_overall = None if np.isnan(self.agreement_) else self.agreement_
        return Certificate(
            alpha=self.alpha_, delta=check_delta(self.delta), procedure=self.procedure,
            tie_policy=self.tie_policy, grid=_grid_record(first.grid_) if first else {},
            stages=stages, delta_split=record["delta_split"], coverage=self.coverage_,
            n_calibration=self.n_calibration_,
            agreement_on_accepted=agreement_overall, data_hash=data_hash, model_hash=model_hash,
            assumptions=list(ASSUMPTIONS) + [GROUP_ASSUMPTION], version=__version__,
            extra={"n_used": self.n_used_, "n_ties_dropped": self.n_ties_dropped_, **(extra or {})},
            groups=record)


GROUP_ASSUMPTION = ("Per group: the calibration items of a group and its deployment items are "
                    "exchangeable; an item's group is known before it is judged and never chosen "
                    "after seeing the verdict; items of groups absent from calibration are escalated.")


def groups_record(calibrator: GroupedCalibrator, column: str,
                  confidence_names: Sequence[str] | None = None) -> dict:
    """A JSON-ready record of per-group thresholds: the certificate's ``groups`` field.

    ``{"column", "delta_split", "unseen", "values": {group: {"delta", "n_calibration",
    "coverage", "agreement", "abstains", "labels_needed", "stages": [{name, confidence,
    threshold, n, k, upper_bound, coverage, agreement, delta, ...}]}}}`` — each group's stage
    records are those of :meth:`CascadeCalibrator.certificate` (the same keys as a
    certificate's ``stages``).
    """
    names = list(confidence_names or ["confidence"] * len(calibrator.stage_names_))
    n_groups = len(calibrator.groups_)
    split = (f"union bound: delta / {n_groups} per group" if isinstance(calibrator.delta_split, str)
             else "union bound with weights " + str({g: float(w) for g, w in calibrator.delta_split.items()}))
    n_stages = len(calibrator.stage_names_)
    if n_stages > 1:
        split += "; each group's delta_g split across its stages (" + (
            f"delta_g / {n_stages} per stage" if isinstance(calibrator.stage_split, str)
            else f"weights {list(map(float, calibrator.stage_split))}") + ")"
    if calibrator.group_designs:
        split += ("; per-group designs: each group's grid, start and stage split chosen on its "
                  "own training rows (its design field)")
    values = {}
    for g in calibrator.groups_:
        cascade = calibrator.calibrators_[g]
        if cascade is None:
            stages = [{"name": n, "confidence": c, "threshold": float("inf"), "n": 0, "k": 0,
                       "upper_bound": 1.0, "coverage": 0.0, "agreement": None,
                       "delta": calibrator.deltas_[g] / n_stages, "abstains": True}
                      for n, c in zip(calibrator.stage_names_, names)]
        else:
            stages = cascade.certificate(data_hash="-", confidence_names=names).stages
        agreement_g = calibrator.group_agreement_[g]
        values[g] = {"delta": calibrator.deltas_[g],
                     "n_calibration": calibrator.group_n_calibration_[g],
                     "coverage": calibrator.group_coverage_[g],
                     "agreement": None if np.isnan(agreement_g) else agreement_g,
                     "abstains": calibrator.abstains_[g],
                     "labels_needed": calibrator.labels_needed_.get(g), "stages": stages}
        designed = (calibrator.group_designs or {}).get(g)
        if designed is not None:
            values[g]["design"] = designed["record"]
    return {"column": column, "delta_split": split, "unseen": "escalate", "values": values}


def thresholds_from_record(record: dict) -> dict[str, np.ndarray]:
    """Per-group stage thresholds from a certificate's ``groups`` field (for ``route_by_group``)."""
    return {g: np.array([float(s["threshold"]) for s in v["stages"]], dtype=float)
            for g, v in record["values"].items()}
