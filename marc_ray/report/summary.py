"""Every number the report shows, computed once from a certificate and the scored items.

The renderer (``render.py``) only formats what :func:`summarize` returns, so the HTML, the
Markdown and ``report.json`` can never disagree, and a test can check ``report.json`` against
the certificate. Each cascade stage is recomputed from the scores (n, k, coverage at λ̂) and
compared with what the certificate says: a mismatch is shown in red, not hidden.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..calibrate import diagnostics
from ..calibrate.bounds import clopper_pearson_upper
from ..calibrate.grid import counts_at_thresholds
from ..calibrate.routing import certificate_thresholds, route
from ..contracts import Certificate, ItemSet, agreement


@dataclass
class ReportInputs:
    """What a report is made of: a certificate, the calibration items, optionally new items.

    ``measures`` maps a confidence measure's name to its held-out metrics (``auroc``,
    ``ranking_risk``, ...); ``manifest`` is the reproducibility record (config, hashes,
    versions, seeds, command); ``notes`` are sentences shown at the top (e.g. that the bundled
    judge is tiny); ``drift_significance`` is the run's ``calibrate.drift_significance``.
    """

    certificate: Certificate
    calibration: ItemSet
    deployment: ItemSet | None = None
    measures: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    title: str = "marc_ray: certified selective judge"
    notes: list = field(default_factory=list)
    drift_significance: float = 0.01


def percent(value: float | None) -> str:
    """0.85 → "85%", 0.125 → "12.5%"; None/NaN → "n/a"."""
    if value is None or not math.isfinite(value):
        return "n/a"
    text = f"{100 * value:.1f}".rstrip("0").rstrip(".")
    return text + "%"


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


def _stage_view(certificate: Certificate, items: ItemSet, stage: int
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
    confidence, agree = _stage_view(certificate, items, stage)
    finite = np.isfinite(confidence)
    n, k = counts_at_thresholds(confidence[finite], agree[finite], values)
    delta = float(certificate.stages[stage].get("delta", certificate.delta))
    bound = clopper_pearson_upper(k, n, delta)
    with np.errstate(invalid="ignore", divide="ignore"):
        risk = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    return {"grid": values.tolist(), "n": n.tolist(), "k": k.tolist(), "risk": risk.tolist(),
            "bound": np.asarray(bound, dtype=float).tolist()}


def summarize(inputs: ReportInputs) -> dict:
    """All the report's numbers (JSON-ready except for NaN/inf, which the writer encodes)."""
    certificate = inputs.certificate
    names = [stage["name"] for stage in certificate.stages]
    calibration = evaluate(certificate, inputs.calibration)
    deployment = evaluate(certificate, inputs.deployment) if inputs.deployment is not None else None

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
        if inputs.calibration.labelled:
            confidence, agree = _stage_view(certificate, inputs.calibration, l)
            finite = np.isfinite(confidence)
            entry["monotonicity"] = diagnostics.monotonicity(confidence[finite], agree[finite])
            top = confidence[finite] >= np.nanquantile(confidence[finite], 0.5) if finite.any() else finite
            observed = float(1 - agree[finite][top].mean()) if top.any() else None
            entry["size"] = diagnostics.calibration_size(int(finite.sum()), certificate.alpha,
                                                         float(stage.get("delta", certificate.delta)),
                                                         observed)
            entry["scan"] = threshold_scan(certificate, inputs.calibration, l)
        if inputs.deployment is not None:
            cal = inputs.calibration.confidence[:, l]
            dep = inputs.deployment.confidence[:, l]
            if np.isfinite(cal).any() and np.isfinite(dep).any():
                threshold = float(certificate_thresholds(certificate)[l])
                entry["drift"] = diagnostics.drift(cal, dep, threshold if math.isfinite(threshold) else None,
                                                   significance=inputs.drift_significance)
        diagnostics_out["stages"].append(entry)

    return {"title": inputs.title, "notes": list(inputs.notes),
            "guarantee": guarantee_sentences(certificate, calibration, deployment),
            "certificate": certificate.to_dict(), "calibration": calibration,
            "deployment": deployment, "consistency": checks, "diagnostics": diagnostics_out,
            "measures": inputs.measures, "manifest": inputs.manifest}


def guarantee_sentences(certificate: Certificate, calibration: dict, deployment: dict | None) -> dict:
    """The guarantee in plain words: a headline, the formal statement, the routing sentence."""
    alpha, delta = certificate.alpha, certificate.delta
    thresholds = certificate_thresholds(certificate)
    formal = (f"P(judge agrees with humans | confidence >= lambda-hat) >= 1 - alpha = "
              f"{1 - alpha:g}, with probability >= 1 - delta = {1 - delta:g} over the draw of the "
              f"calibration set.")
    coverage = calibration["coverage"]  # as the certificate counts it: all items, ties included
    if not np.isfinite(thresholds).any():
        headline = (f"No threshold passed: even on its most confident calibration items, the "
                    f"judge's disagreement with the human annotators could not be shown to be at "
                    f"most {percent(alpha)} with {percent(1 - delta)} confidence. The judge decides "
                    f"nothing and every item is escalated to humans. To obtain a certificate, "
                    f"label more calibration items, relax alpha or delta, or use a stronger judge.")
        return {"headline": headline, "formal": formal, "routing": "", "abstained": True}
    who = "the judge" if len(thresholds) == 1 else "the deciding judge of the cascade"
    headline = (f"When it decides, {who} agrees with the human annotators at least "
                f"{percent(1 - alpha)} of the time, with {percent(1 - delta)} confidence; it decided "
                f"{percent(coverage)} of the calibration items and escalated {percent(1 - coverage)}.")
    if len(thresholds) > 1:
        parts = [f"{name} decided {percent(share)}" for name, share in calibration["shares"].items()
                 if name != "escalated"]
        routing = ("On the calibration items: " + ", ".join(parts)
                   + f", and {percent(calibration['shares']['escalated'])} went to humans.")
    else:
        routing = ""
    if deployment is not None:
        routing += (f" On the {deployment['n']} {deployment['name']} items it decided "
                    f"{percent(deployment['coverage'])}")
        if deployment.get("agreement_on_accepted") is not None:
            routing += (f" and agreed with the humans on {percent(deployment['agreement_on_accepted'])}"
                        f" of those")
        routing += "."
    return {"headline": headline, "formal": formal, "routing": routing.strip(), "abstained": False}
