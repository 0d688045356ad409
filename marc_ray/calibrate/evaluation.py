"""What a certificate does on labelled items: every number the report shows, computed here.

The report (``marc_ray.report``) only formats; this module routes the calibration and test
items through the certificate (``routing.route``), recomputes each stage's n and k at λ̂ to check
the certificate, scans the grid, draws the risk–coverage curves, runs the diagnostics
(monotonicity, calibration size, drift) and compares the confidence measures by certifying each
one with the certificate's α, δ and kind of grid. The pipeline's report stage and
``marc-ray report`` call :func:`evaluate_certificate` (and :func:`compare_certified_measures`) and hand the
result to the report.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pyarrow as pa

from ..contracts import Certificate, ItemSet, agreement
from .bounds import clopper_pearson_upper
from .diagnostics import calibration_size, drift, monotonicity
from .calibrator import SelectiveCalibrator
from .grid import ThresholdGrid, counts_at_thresholds, quantile_grid
from .metrics import aurc, auroc, risk_coverage_curve
from .routing import certificate_thresholds, route


def evaluate(certificate: Certificate, items: ItemSet) -> dict:
    """Route ``items`` through the certificate; with labels, measure agreement per stage.

    Returns
    -------
    dict
        ``n``, ``coverage``, ``escalated``, ``shares`` (stage name or "escalated" → share);
        with labels (tie policy of the certificate applied): ``n_kept``, ``coverage_kept``,
        ``agreement_on_accepted``, and ``stages``: per stage the items that reached it
        (``n_reached``), and ``n``/``k``/``risk`` at its λ̂ recomputed from the scores.
    """
    routing = route(certificate, items.confidence, items.pred)
    names = [stage["name"] for stage in certificate.stages]
    n = len(routing.stage)
    out = {"name": items.name, "n": n,
           "coverage": float(routing.accepted.mean()) if n else math.nan,
           "escalated": float((~routing.accepted).mean()) if n else math.nan,
           "shares": {name: float(np.mean(routing.stage == l)) if n else 0.0
                      for l, name in enumerate(names)}}
    out["shares"]["escalated"] = out["escalated"]
    if not items.labelled:
        return out
    thresholds = certificate_thresholds(certificate)
    _, kept = agreement(np.full(n, "a", dtype=object), items.human_label, certificate.tie_policy)
    reached = kept.copy()
    stages = []
    decided_agree = []
    for l, name in enumerate(names):
        agree_l, _ = agreement(items.pred[:, l], items.human_label, certificate.tie_policy)
        agree_all = np.zeros(n, dtype=bool)
        agree_all[kept] = agree_l
        accepted_l = reached & (routing.stage == l)
        n_l, k_l = int(accepted_l.sum()), int((accepted_l & ~agree_all).sum())
        stages.append({"name": name, "threshold": float(thresholds[l]), "n_reached": int(reached.sum()),
                       "n": n_l, "k": k_l, "risk": k_l / n_l if n_l else math.nan,
                       "coverage_of_reached": n_l / reached.sum() if reached.sum() else math.nan})
        decided_agree.append(agree_all[accepted_l])
        reached = reached & ~accepted_l
    accepted_kept = kept & routing.accepted
    agree_decided = np.concatenate(decided_agree) if decided_agree else np.array([], bool)
    out.update({"n_kept": int(kept.sum()),
                "coverage_kept": float(accepted_kept.sum() / kept.sum()) if kept.sum() else math.nan,
                "n_accepted": int(accepted_kept.sum()),
                "agreement_on_accepted": float(agree_decided.mean()) if agree_decided.size else None,
                "stages": stages})
    return out


def stage_view(certificate: Certificate, items: ItemSet, stage: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Confidence and agreement of the labelled items that reach ``stage`` (tie policy applied)."""
    routing = route(certificate, items.confidence, items.pred)
    _, kept = agreement(np.full(len(routing.stage), "a", dtype=object), items.human_label,
                        certificate.tie_policy)
    reached = kept & ((routing.stage < 0) | (routing.stage >= stage))
    agree_l, _ = agreement(items.pred[:, stage], items.human_label, certificate.tie_policy)
    agree_all = np.zeros(len(routing.stage), dtype=bool)
    agree_all[kept] = agree_l
    return items.confidence[reached, stage], agree_all[reached]


def threshold_scan(certificate: Certificate, items: ItemSet, stage: int) -> dict:
    """n, k, empirical risk and bound at every grid threshold of one stage (calibration set)."""
    values = np.asarray(certificate.grid.get("values", []), dtype=float)
    if values.size == 0:
        return {}
    confidence, agree = stage_view(certificate, items, stage)
    finite = np.isfinite(confidence)
    n, k = counts_at_thresholds(confidence[finite], agree[finite], values)
    delta = float(certificate.stages[stage].get("delta", certificate.delta))
    bound = clopper_pearson_upper(k, n, delta)
    with np.errstate(invalid="ignore", divide="ignore"):
        risk = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    return {"grid": values.tolist(), "n": n.tolist(), "k": k.tolist(), "risk": risk.tolist(),
            "bound": np.asarray(bound, dtype=float).tolist()}


def risk_coverage(certificate: Certificate, items: ItemSet, stage: int):
    """The risk–coverage curve of the labelled items reaching ``stage``, and the certified point.

    Returns
    -------
    curve : (coverage, risk) arrays, or None when no item has a finite confidence
    point : (coverage, risk) at λ̂, or None (nothing accepted, or λ̂ = inf)
    """
    threshold = float(certificate.stages[stage]["threshold"])
    confidence, agree = stage_view(certificate, items, stage)
    finite = np.isfinite(confidence)
    if not finite.any():
        return None, None
    curve = risk_coverage_curve(confidence[finite], agree[finite])
    point = None
    if math.isfinite(threshold):
        accepted = confidence[finite] >= threshold
        if accepted.any():
            point = (float(accepted.mean()), float(1 - agree[finite][accepted].mean()))
    return curve, point


def evaluate_certificate(certificate: Certificate, calibration_items: ItemSet,
                         deployment_items: ItemSet | None = None,
                         drift_significance: float = 0.01) -> dict:
    """Every number of the report: routing per item set, the consistency checks against the
    certificate, the diagnostics per stage and the risk–coverage curves.

    Returns
    -------
    dict
        ``calibration``, ``deployment`` (:func:`evaluate`; None without deployment items),
        ``consistency``, ``diagnostics`` (per stage: monotonicity, size, scan, drift) and
        ``curves`` (per stage: item-set name → (curve, point) of :func:`risk_coverage`; arrays,
        for the figures, not for JSON).
    """
    names = [stage["name"] for stage in certificate.stages]
    calibration = evaluate(certificate, calibration_items)
    deployment = evaluate(certificate, deployment_items) if deployment_items is not None else None

    checks = []
    for l, stage in enumerate(certificate.stages):
        recomputed = calibration.get("stages", [{}] * len(names))[l]
        for key in ("n", "k"):
            if key in stage and key in recomputed:
                checks.append({"stage": stage["name"], "quantity": key, "certificate": stage[key],
                               "recomputed": recomputed[key],
                               "match": int(stage[key]) == int(recomputed[key])})

    diagnostics_out: dict = {"stages": []}
    for l, stage in enumerate(certificate.stages):
        entry: dict = {"name": stage["name"], "confidence": stage["confidence"]}
        if calibration_items.labelled:
            confidence, agree = stage_view(certificate, calibration_items, l)
            finite = np.isfinite(confidence)
            entry["monotonicity"] = monotonicity(confidence[finite], agree[finite])
            top = confidence[finite] >= np.nanquantile(confidence[finite], 0.5) if finite.any() else finite
            observed = float(1 - agree[finite][top].mean()) if top.any() else None
            entry["size"] = calibration_size(int(finite.sum()), certificate.alpha,
                                             float(stage.get("delta", certificate.delta)), observed)
            entry["scan"] = threshold_scan(certificate, calibration_items, l)
        if deployment_items is not None:
            cal = calibration_items.confidence[:, l]
            dep = deployment_items.confidence[:, l]
            if np.isfinite(cal).any() and np.isfinite(dep).any():
                threshold = float(certificate_thresholds(certificate)[l])
                entry["drift"] = drift(cal, dep, threshold if math.isfinite(threshold) else None,
                                       significance=drift_significance)
        diagnostics_out["stages"].append(entry)

    curves = []
    item_sets = [calibration_items] + ([deployment_items] if deployment_items is not None else [])
    for l in range(len(certificate.stages)):
        curves.append({items.name: risk_coverage(certificate, items, l) for items in item_sets
                       if items.labelled})
    return {"calibration": calibration, "deployment": deployment, "consistency": checks,
            "diagnostics": diagnostics_out, "curves": curves}


def compare_certified_measures(table: pa.Table, measures: Sequence[str], certificate: Certificate
                               ) -> dict:
    """Held-out AUROC, ranking risk and AURC of each confidence measure (first judge), and the
    coverage each would get if certified with the same α, δ and grid on the calibration split."""
    splits = np.array(table.column("split").to_pylist(), dtype=object)
    held_out = "test" if (splits == "test").any() else "calibration"
    labels = np.array(table.column("human_label").to_pylist(), dtype=object)
    pred = np.array(table.column("pred").to_pylist(), dtype=object)
    has_verdict = np.isin(pred, ["a", "b"])
    grid_record = certificate.grid
    out = {}
    for measure in measures:
        if measure not in table.column_names:
            continue
        values = table.column(measure).to_numpy(zero_copy_only=False).astype(float)
        usable = has_verdict & np.isfinite(values)
        entry: dict = {}
        test = usable & (splits == held_out)
        agree, kept = agreement(pred[test], labels[test], certificate.tie_policy)
        if agree.size:
            entry["auroc"] = auroc(values[test][kept], agree)
            entry["ranking_risk"] = 1 - entry["auroc"] if math.isfinite(entry["auroc"]) else math.nan
            entry["aurc"] = aurc(values[test][kept], agree)
        cal = usable & (splits == "calibration")
        # each measure gets a grid of the certificate's kind on its own scale: the same fixed
        # grid, or quantiles of its own training-split scores (both data-independent)
        train = usable & (splits == "train")
        if grid_record.get("kind") == "quantile" and train.any():
            grid = quantile_grid(values[train], int(grid_record.get("n_points", 100)))
        else:
            grid = ThresholdGrid(grid_record["values"], kind="fixed")
        try:
            calibrator = SelectiveCalibrator(alpha=certificate.alpha, delta=certificate.stages[0].get(
                "delta", certificate.delta), grid=grid, procedure=certificate.procedure,
                tie_policy=certificate.tie_policy).calibrate(values[cal], pred[cal], labels[cal])
            entry["certified_threshold"] = float(calibrator.threshold_)
            entry["certified_coverage"] = float(calibrator.coverage_)
            accepted = values[test] >= calibrator.threshold_
            agree_all, kept_all = agreement(pred[test], labels[test], certificate.tie_policy)
            accepted_kept = accepted[kept_all]
            entry[f"{held_out}_coverage"] = float(accepted.mean()) if accepted.size else math.nan
            entry[f"{held_out}_agreement_on_decided"] = (float(agree_all[accepted_kept].mean())
                                                         if accepted_kept.any() else math.nan)
        except ValueError as error:  # e.g. no calibration item left: say so, do not hide it
            entry["certified_threshold"] = f"not calibrated: {error}"
        out[measure] = entry
    return out
