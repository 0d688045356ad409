"""What a cascade costs beside what it decides: the cost–coverage frontier.

A cascade exists to spend less while still deciding most items: stage ``l`` is run only on the
items no earlier stage decided, so its **expected cost per item** is

    sum over stages l of  cost_l × (share of items reaching stage l),

with ``cost_l`` the judge's cost per item (``calibrate.costs``: tokens, or a price per 1k
tokens times the prompt length; any unit, the same for every judge). The report sets the
cascade's certified coverage and expected cost beside **each judge alone**: that judge
certified on the same calibration items with the certificate's α, the whole δ, its procedure
and tie policy, and run on every item (cost ``cost_j``). A judge alone is a comparison, not a
certificate: it is what one would have deployed instead.

Without ``calibrate.costs`` every judge counts :data:`DEFAULT_COST` (1): the axis is then
*judge calls per item* (a cascade's expected number of judges run per item), and the report
says that no prices were given. The **frontier** is the points no other point beats: none
with at most its cost and at least its coverage, one of them strictly.

Used by the report (:func:`cost_coverage` on the run's calibration and test items) and by the
plan and the cascade design (:func:`expected_cost` of predicted reach shares).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..contracts import Certificate, ItemSet, agreement

__all__ = ["DEFAULT_COST", "reach_shares", "expected_cost", "cost_coverage", "frontier",
           "certificate_costs"]

DEFAULT_COST = 1.0  # per judge when no calibrate.costs are given: the axis counts judge calls


def reach_shares(stage: np.ndarray, n_stages: int) -> np.ndarray:
    """Share of items that reach each stage, from the deciding stage of each item (-1:
    escalated): stage ``l`` sees the items no stage before it decided."""
    stage = np.asarray(stage)
    if stage.size == 0:
        return np.ones(n_stages)
    return np.array([np.mean((stage < 0) | (stage >= l)) for l in range(n_stages)])


def expected_cost(costs: Sequence[float], reach: Sequence[float]) -> float:
    """Expected cost per item: ``sum_l costs[l] * reach[l]`` (stages in cascade order)."""
    costs, reach = np.asarray(costs, dtype=float), np.asarray(reach, dtype=float)
    if costs.shape != reach.shape:
        raise ValueError(f"{costs.size} costs for {reach.size} stages")
    return float(np.dot(costs, reach))


def certificate_costs(certificate: Certificate) -> list[float] | None:
    """The stages' costs the certificate records (``extra.costs``, judge name -> cost: the
    pipeline writes ``calibrate.costs`` there), in stage order; None when it records none."""
    recorded = (certificate.extra or {}).get("costs")
    if not recorded:
        return None
    names = [stage["name"] for stage in certificate.stages]
    missing = [n for n in names if n not in recorded]
    if missing:
        raise ValueError(f"the certificate's extra.costs has no cost for {missing}")
    return [float(recorded[n]) for n in names]


def frontier(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names of the (cost, coverage) points no other point beats, cheapest first."""
    names = []
    for name, (cost, coverage) in points.items():
        beaten = any(c <= cost and v >= coverage and (c < cost or v > coverage)
                     for other, (c, v) in points.items() if other != name)
        if not beaten:
            names.append(name)
    return sorted(names, key=lambda n: (points[n][0], -points[n][1]))


def cost_coverage(certificate: Certificate, calibration_items: ItemSet,
                  deployment_items: ItemSet | None = None, costs: Sequence[float] | None = None
                  ) -> dict | None:
    """The cascade and each judge alone: cost per item and certified coverage.

    Parameters
    ----------
    certificate : a cascade's certificate (one stage: None, there is nothing to compare)
    calibration_items, deployment_items : ItemSet, judges in the certificate's stage order
    costs : per judge in stage order, or None (every judge :data:`DEFAULT_COST`)

    Returns
    -------
    dict or None
        ``costs`` (per stage name), ``costs_given``, ``unit``, ``sets`` (item-set names) and
        ``rows``: the cascade first, then each judge alone, each with ``name``, ``kind``
        ("cascade" / "judge alone"), ``threshold(s)``, and per item set ``coverage``, ``cost``
        (expected, per item) and ``agreement`` on the decided items; ``frontier``: the names
        on the cost–coverage frontier of the calibration items.
    """
    from .evaluation import route_items

    names = [stage["name"] for stage in certificate.stages]
    if len(names) < 2:
        return None
    given = costs is not None
    per_stage = np.asarray(costs if given else [DEFAULT_COST] * len(names), dtype=float)
    if per_stage.size != len(names) or not np.all(np.isfinite(per_stage)) or (per_stage < 0).any():
        raise ValueError(f"cost_coverage needs {len(names)} costs >= 0 (one per stage), got {costs!r}")
    item_sets = [s for s in (calibration_items, deployment_items) if s is not None]
    alone = _judges_alone(certificate, calibration_items)
    rows = [{"name": "cascade (" + " -> ".join(names) + ")", "kind": "cascade",
             "thresholds": [float(s["threshold"]) for s in certificate.stages], "sets": {}}]
    rows += [{"name": name, "kind": "judge alone", "thresholds": alone[l]["thresholds"],
              "sets": {}} for l, name in enumerate(names)]
    for items in item_sets:
        routing = route_items(certificate, items)
        rows[0]["sets"][items.name] = _figures(routing.stage, routing.verdict, items, certificate,
                                               expected_cost(per_stage, reach_shares(routing.stage, len(names))))
        for l in range(len(names)):
            stage, verdict = alone[l]["route"](items, l)
            rows[l + 1]["sets"][items.name] = _figures(stage, verdict, items, certificate,
                                                       float(per_stage[l]))
    points = {row["name"]: (row["sets"][calibration_items.name]["cost"],
                            row["sets"][calibration_items.name]["coverage"]) for row in rows}
    return {"costs": dict(zip(names, per_stage.tolist())), "costs_given": given,
            "unit": "cost per item" if given else "judge calls per item",
            "sets": [s.name for s in item_sets], "rows": rows, "frontier": frontier(points),
            "judges_alone": ("certified on the same calibration items with the "
                             "certificate's alpha, the whole delta, its procedure, tie policy and "
                             "grid" + (" (per group, delta split equally across groups)"
                                       if certificate.groups else ""))}


def _figures(stage, verdict, items: ItemSet, certificate: Certificate, cost: float) -> dict:
    decided = np.asarray(stage) >= 0
    n = decided.size
    out = {"n": int(n), "n_decided": int(decided.sum()),
           "coverage": float(decided.mean()) if n else math.nan, "cost": cost, "agreement": None}
    if items.human_label is not None and decided.any():
        agree, _ = agreement(np.asarray(verdict, dtype=object)[decided],
                             np.asarray(items.human_label, dtype=object)[decided],
                             certificate.tie_policy)
        out["agreement"] = float(agree.mean()) if agree.size else None
    return out


def _judges_alone(certificate: Certificate, calibration_items: ItemSet) -> list[dict]:
    """Each stage's judge certified alone (module docstring): ``thresholds`` (a list of one,
    or per group a {group: threshold}) and ``route(items, stage)`` -> (stage, verdict)."""
    from .calibrator import SelectiveCalibrator
    from .grid import ThresholdGrid
    from .groups import GroupedCalibrator
    from .routing import route

    grid = ThresholdGrid(certificate.grid["values"], kind="fixed")
    settings = dict(alpha=certificate.alpha, delta=certificate.delta, grid=grid,
                    procedure=certificate.procedure, tie_policy=certificate.tie_policy)
    labels = calibration_items.human_label
    out = []
    for l in range(len(certificate.stages)):
        confidence, pred = calibration_items.confidence[:, l], calibration_items.pred[:, l]
        if certificate.groups:
            grouped = GroupedCalibrator(**settings).calibrate(
                confidence, pred, labels, groups=np.asarray([str(g) for g in calibration_items.groups]))

            def router(items, stage, grouped=grouped):
                groups = (items.groups if items.groups is not None
                          else np.full(len(items.confidence), None, dtype=object))
                routed = grouped.route(items.confidence[:, stage], items.pred[:, stage], groups=groups)
                return routed.stage, routed.verdict

            out.append({"thresholds": {g: float(t[0]) for g, t in grouped.thresholds_.items()},
                        "route": router})
        else:
            threshold = float(SelectiveCalibrator(**settings).calibrate(confidence, pred, labels).threshold_)

            def router(items, stage, threshold=threshold):
                routed = route(np.array([threshold]), items.confidence[:, [stage]], items.pred[:, [stage]])
                return routed.stage, routed.verdict

            out.append({"thresholds": [threshold], "route": router})
    return out
