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

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..contracts import Certificate, agreement
from .bounds import n_needed_at_rate
from .calibrator import NotCalibratedError, check_alpha, check_delta, refuse_seen, verdict_mask
from .config import CalibrateConfig
from .cascade import CascadeCalibrator
from .routing import ESCALATE, Routing, route, stage_matrix
__all__ = ["GroupedCalibrator", "GroupRouting", "route_by_group", "group_deltas",
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


@dataclass
class GroupRouting(Routing):
    """Where each item went, by group: a :class:`Routing` (``stage``, ``verdict``) plus

    Attributes
    ----------
    unseen : ndarray of bool, shape (n,)
        The item's group was not in the calibration set (escalated for that reason).
    """

    unseen: np.ndarray


def route_by_group(thresholds: Mapping[str, Sequence[float]], groups, confidence, pred
                   ) -> GroupRouting:
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
    GroupRouting
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
    return GroupRouting(stage=stage, verdict=verdict, unseen=unseen)


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

    Attributes
    ----------
    groups_ : tuple of str
        The calibration groups, sorted.
    deltas_ : dict group -> float
    thresholds_ : dict group -> ndarray of float, shape (n_stages,)
        ``inf`` where a stage accepts nothing (every stage ``inf``: the group abstains).
    calibrators_ : dict group -> CascadeCalibrator or None (None: no usable item)
    n_calibration_, coverage_, agreement_ : dict group -> int / float
    abstains_ : dict group -> bool
    labels_needed_ : dict group -> dict (see :func:`labels_needed`; for abstaining groups)
    coverage_overall_, agreement_overall_ : float
    stage_names_ : list of str
    """

    def __init__(self, alpha=CalibrateConfig.alpha, delta=CalibrateConfig.delta,
                 delta_split=EQUAL_ACROSS_GROUPS, stage_split=CalibrateConfig.delta_split,
                 grid=None, n_grid=CalibrateConfig.n_grid, procedure=CalibrateConfig.procedure,
                 min_n=CalibrateConfig.min_n, tie_policy=CalibrateConfig.tie_policy):
        self.alpha = alpha
        self.delta = delta
        self.delta_split = delta_split
        self.stage_split = stage_split
        self.grid = grid
        self.n_grid = n_grid
        self.procedure = procedure
        self.min_n = min_n
        self.tie_policy = tie_policy

    def calibrate(self, confidence, pred, human_label, groups, *, judge_name="judge", ids=None,
                  provenance=None) -> "GroupedCalibrator":
        """One judge: a threshold per group (a one-stage cascade is exactly SelectiveCalibrator)."""
        return self.calibrate_cascade([(judge_name, confidence, pred)], human_label, groups,
                                      ids=ids, provenance=provenance)

    def calibrate_cascade(self, stages: Sequence[tuple], human_label, groups, *, ids=None,
                          provenance=None) -> "GroupedCalibrator":
        """Calibrate a cascade per group.

        Parameters
        ----------
        stages : sequence of (name, confidence, pred), cheapest first (see CascadeCalibrator)
        human_label : array-like of str, shape (n_items,)
        groups : array-like of str, shape (n_items,)
            None is refused (name a group for every calibration item).
        ids : array-like of str, shape (n_items,), optional
            Item ids; each group's calibration refuses a quantile grid built from them.
        provenance : dict, optional
            Rows that shaped what the result relies on; calibration ids among them are refused.

        Returns
        -------
        self
        """
        (alpha,) = check_alpha(self.alpha)
        human_label = np.asarray(human_label, dtype=object).ravel()
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
        parsed = [(str(n), np.asarray(c, dtype=float).ravel(), np.asarray(p, dtype=object).ravel())
                  for n, c, p in stages]
        if ids is not None:
            ids = np.asarray(ids, dtype=object).ravel()
            if ids.size != human_label.size:
                raise ValueError(f"ids ({ids.size}) and human_label ({human_label.size}) differ in length")
        self.stage_names_ = [name for name, *_ in parsed]
        self.calibrators_, self.thresholds_, self.labels_needed_ = {}, {}, {}
        self.n_calibration_, self.coverage_, self.agreement_, self.abstains_ = {}, {}, {}, {}
        decided_agree = []
        for g in names:
            rows = groups == g
            cascade = CascadeCalibrator(alpha=alpha, delta=deltas[g], delta_split=self.stage_split,
                                        grid=self.grid, n_grid=self.n_grid, procedure=self.procedure,
                                        min_n=self.min_n, tie_policy=self.tie_policy)
            _, usable = agreement(np.full(rows.sum(), "a", dtype=object), human_label[rows], self.tie_policy)
            if usable.any():
                cascade.calibrate([(n, c[rows], p[rows]) for n, c, p in parsed], human_label[rows],
                                  ids=None if ids is None else ids[rows])
                thresholds = cascade.thresholds_
                self.coverage_[g] = cascade.coverage_
                self.agreement_[g] = cascade.agreement_
                routing = route_by_group({g: thresholds}, groups[rows],
                                         np.stack([c[rows] for _, c, _ in parsed], axis=1),
                                         np.stack([p[rows] for _, _, p in parsed], axis=1))
                agree_g, _ = agreement(routing.verdict[routing.accepted],
                                       human_label[rows][routing.accepted], self.tie_policy)
                decided_agree.append(agree_g)
            else:
                cascade = None
                thresholds = np.full(len(parsed), np.inf)
                self.coverage_[g], self.agreement_[g] = 0.0, float("nan")
            self.calibrators_[g] = cascade
            self.thresholds_[g] = np.asarray(thresholds, dtype=float)
            self.n_calibration_[g] = int(rows.sum())
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
        self.coverage_overall_ = (sum(self.coverage_[g] * self.n_calibration_[g] for g in names)
                                  / n_total if n_total else 0.0)
        pooled = np.concatenate(decided_agree) if decided_agree else np.array([], dtype=bool)
        self.agreement_overall_ = float(pooled.mean()) if pooled.size else float("nan")
        return self

    def _check_calibrated(self) -> None:
        if not hasattr(self, "thresholds_"):
            raise NotCalibratedError("This GroupedCalibrator is not calibrated yet: call "
                                     "calibrate(confidence, pred, human_label, groups) first")

    def route(self, confidence, pred, *, groups) -> GroupRouting:
        """Which stage decides each item (:func:`route_by_group` with this calibrator's
        thresholds): the calibrators' one ``route`` (``confidence`` and ``pred`` of shape (n,),
        (n, L) or a list of L per-stage arrays), plus the items' ``groups``."""
        self._check_calibrated()
        return route_by_group(self.thresholds_, groups, stage_matrix(confidence, float),
                              stage_matrix(pred, object))

    def accept(self, confidence, groups) -> np.ndarray:
        """One judge: which items their group's certified threshold accepts (unseen: none)."""
        self._check_calibrated()
        confidence = np.asarray(confidence, dtype=float).ravel()
        routing = route_by_group(self.thresholds_, groups, confidence,
                                 np.full(confidence.size, "a", dtype=object))
        return routing.accepted

    def groups_record(self, column: str, confidence_names: Sequence[str] | None = None) -> dict:
        """The per-group part of a certificate (see :func:`groups_record`)."""
        self._check_calibrated()
        return groups_record(self, column, confidence_names)

    def certificate(self, data_hash: str, column: str = "group",
                    confidence_names: Sequence[str] | None = None,
                    model_hash: str | None = None, extra: dict | None = None) -> Certificate:
        """A certificate whose ``groups`` field holds every group's thresholds (``column``: the
        group column's name). Unbound and without provenance: ``calibrate.certify`` binds it.

        The top-level ``stages`` name the judges with threshold ``inf``: a router that ignores
        ``groups`` escalates everything (fails safe) rather than applying a wrong threshold.
        """
        from .. import __version__
        from ..contracts import ASSUMPTIONS

        record = self.groups_record(column, confidence_names)
        names = confidence_names or ["confidence"] * len(self.stage_names_)
        stages = [{"name": n, "confidence": c, "threshold": float("inf"), "grouped": True,
                   "note": "per-group thresholds are in the certificate's groups field"}
                  for n, c in zip(self.stage_names_, names)]
        first = next((c for c in self.calibrators_.values() if c is not None), None)
        from .calibrator import _grid_record

        agreement_overall = None if np.isnan(self.agreement_overall_) else self.agreement_overall_
        return Certificate(
            alpha=self.alpha_, delta=check_delta(self.delta), procedure=self.procedure,
            tie_policy=self.tie_policy, grid=_grid_record(first.grid_) if first else {},
            stages=stages, delta_split=record["delta_split"], coverage=self.coverage_overall_,
            n_calibration=int(sum(self.n_calibration_.values())),
            agreement_on_accepted=agreement_overall, data_hash=data_hash, model_hash=model_hash,
            assumptions=list(ASSUMPTIONS) + [GROUP_ASSUMPTION], version=__version__,
            extra=dict(extra or {}), groups=record)


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
        agreement_g = calibrator.agreement_[g]
        values[g] = {"delta": calibrator.deltas_[g], "n_calibration": calibrator.n_calibration_[g],
                     "coverage": calibrator.coverage_[g],
                     "agreement": None if np.isnan(agreement_g) else agreement_g,
                     "abstains": calibrator.abstains_[g],
                     "labels_needed": calibrator.labels_needed_.get(g), "stages": stages}
    return {"column": column, "delta_split": split, "unseen": "escalate", "values": values}


def thresholds_from_record(record: dict) -> dict[str, np.ndarray]:
    """Per-group stage thresholds from a certificate's ``groups`` field (for ``route_by_group``)."""
    return {g: np.array([float(s["threshold"]) for s in v["stages"]], dtype=float)
            for g, v in record["values"].items()}
