"""The report's inputs and its summary: the stages' numbers arranged with words.

The numbers come from the calibrate layer (``marc_ray.calibrate.evaluation``: routing, the
per-stage n and k recomputed at λ̂, diagnostics, curves); :func:`summarize` adds the guarantee
in plain words and the records, and the renderer (``render.py``) only formats what it returns,
so the HTML, the Markdown and ``report.json`` can never disagree. A mismatch between the
recomputed and the certified n, k is shown in red, not hidden.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..calibrate.cost_coverage import certificate_costs, cost_coverage
from ..calibrate.evaluation import (escalation_examples, evaluate_certificate, evaluate_groups,
                                    measure_advice)
from ..calibrate.routing import certificate_thresholds
from ..calibrate.wording import items_phrase, percent, share_phrase
from ..contracts import Certificate, ItemSet
from ..contracts.io import json_restore


@dataclass
class ReportInputs:
    """What a report is made of: a certificate, the calibration items, optionally new items.

    ``measures`` maps a confidence measure's name to its held-out metrics (``auroc``,
    ``ranking_risk``, ...); ``manifest`` is the reproducibility record (config, hashes,
    versions, seeds, command); ``notes`` are sentences shown at the top (e.g. that the bundled
    judge is tiny); ``drift_significance`` is the run's ``calibrate.drift_significance``;
    ``evaluation`` the calibrate layer's numbers (``calibrate.evaluation.evaluate_certificate``),
    computed from the items when not given.
    """

    certificate: Certificate
    calibration: ItemSet
    deployment: ItemSet | None = None
    measures: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    title: str = "marc_ray: certified selective judge"
    notes: list = field(default_factory=list)
    drift_significance: float = 0.01
    evaluation: dict | None = None
    groups: dict | None = None       # calibrate.evaluation.evaluate_groups (per-group certificate)
    escalations: dict | None = None  # calibrate.evaluation.escalation_examples
    fit: dict | None = None          # per judge: gamma per epoch (fit.stage.fitted_margins)
    advice: dict | None = None       # calibrate.evaluation.measure_advice (rank, auto's choice)
    cost_coverage: dict | None = None  # calibrate.cost_coverage.cost_coverage (a cascade)


def decided_phrase(evaluated: dict) -> str:
    """"688 of the 999 calibration items (68.9%)": coverage with the counts it divides."""
    n = evaluated["n"]
    decided = evaluated.get("n_decided", round(evaluated["coverage"] * n) if n else 0)
    return share_phrase(decided, n, f"{evaluated['name']} items", article="the ")


def counts_line(summary: dict) -> str:
    """"419 calibration items, 59 ties dropped (policy drop), 360 used" (the report's header)."""
    calibration = summary["calibration"]
    tie_policy = summary["certificate"]["tie_policy"]
    used = calibration.get("n_kept", summary["certificate"]["n_calibration"])
    return items_phrase(summary["certificate"]["n_calibration"], used, tie_policy)


def summarize(inputs: ReportInputs, evaluation: dict | None = None) -> dict:
    """All the report's numbers (JSON-ready except for NaN/inf, which the writer encodes).

    ``evaluation`` is :func:`marc_ray.calibrate.evaluation.evaluate_certificate`'s result
    (``inputs.evaluation`` when set, else computed here from the inputs' items); this function
    only arranges it with the words and the records.
    """
    certificate = inputs.certificate
    evaluation = evaluation or evaluation_of(inputs)
    calibration, deployment = evaluation["calibration"], evaluation["deployment"]
    groups, escalations = inputs.groups, inputs.escalations
    if groups is None and certificate.groups:
        groups = evaluate_groups(certificate, inputs.calibration, inputs.deployment)
    if escalations is None:
        escalations = escalation_examples(certificate, inputs.deployment or inputs.calibration)
    frontier = inputs.cost_coverage
    if frontier is None:  # the costs the certificate records (calibrate.costs), else 1 per judge
        frontier = cost_coverage(certificate, inputs.calibration, inputs.deployment,
                                 certificate_costs(certificate))
    advice = inputs.advice if inputs.advice is not None else measure_advice(certificate,
                                                                          inputs.measures)
    notes = list(inputs.notes)
    warning = advice_text({"advice": advice})
    if warning and warning[0] == "warning":  # at the top too: it changes what to certify
        notes.append(warning[1])
    return {"title": inputs.title, "notes": notes,
            "guarantee": guarantee_sentences(certificate, calibration, deployment),
            "certificate": json_restore(certificate.to_dict()), "calibration": calibration,
            "deployment": deployment, "consistency": evaluation["consistency"],
            "diagnostics": evaluation["diagnostics"], "measures": inputs.measures,
            "groups": groups, "escalations": escalations, "fit": inputs.fit,
            "advice": advice, "cost_coverage": frontier,
            "confidence_choice": (certificate.extra or {}).get("confidence_choice"),
            "readings": threshold_readings(certificate, inputs.fit),
            "manifest": inputs.manifest}


def advice_text(summary: dict) -> tuple[str, str] | None:
    """(css class, sentence): where the certified measure ranks by held-out AUROC, and what
    ``confidence: auto`` chooses; a warning when another measure ranks above it."""
    advice = summary.get("advice")
    if not advice:
        return None
    certified, aurocs = advice["certified"], advice["aurocs"]
    rank = advice["ranking"].index(certified) + 1
    text = (f"The certified measure {certified} ranks {rank} of {len(advice['ranking'])} by AUROC "
            f"on the held-out items ({aurocs[certified]:.3f}")
    above = advice["ranks_below"]
    if above:
        text += ", below " + ", ".join(f"{name} {aurocs[name]:.3f}" for name in above) + ")."
    else:
        text += "): no compared measure ranks above it."
    choice, source = advice.get("auto_choice"), advice.get("auto_source")
    if choice and source == "certificate":
        text += " It is what confidence: auto chose on training data."
    elif choice:
        text += (f" calibrate.confidence: auto would choose {choice} ({source}, by predicted "
                 f"certified coverage)" + (", the measure certified." if choice == certified
                                           else "; set `confidence: auto` to certify it."))
    elif advice.get("auto_error"):
        text += f" What confidence: auto would choose could not be computed: {advice['auto_error']}."
    return ("warning" if above else "", text)


LEARNED = ("conf_marc", "conf_vanilla")


def threshold_readings(certificate: Certificate, fit: dict | None) -> dict:
    """Stage name → "estimated agreement >= 0.83" where λ̂ is on a learned measure mapped to an
    estimated agreement probability (the fitted model's agreement map): then λ̂ reads as one."""
    out = {}
    for stage in certificate.stages:
        model = (fit or {}).get(stage.get("judge", stage["name"])) or (fit or {}).get(stage["name"])
        threshold = float(stage["threshold"])
        if stage["confidence"] in LEARNED and model and model.get("agreement_map") and math.isfinite(threshold):
            out[stage["name"]] = f"estimated agreement >= {threshold:.2f}"
    return out


def evaluation_of(inputs: ReportInputs) -> dict:
    """The stages' numbers for these inputs: ``inputs.evaluation``, or the calibrate layer's."""
    if inputs.evaluation is not None:
        return inputs.evaluation
    return evaluate_certificate(inputs.certificate, inputs.calibration, inputs.deployment,
                                inputs.drift_significance)


def guarantee_sentences(certificate: Certificate, calibration: dict, deployment: dict | None) -> dict:
    """The guarantee in plain words: a headline, the formal statement, the routing sentence."""
    alpha, delta = certificate.alpha, certificate.delta
    thresholds = certificate_thresholds(certificate)
    formal = (f"P(judge agrees with humans | confidence >= lambda-hat) >= 1 - alpha = "
              f"{1 - alpha:g}, with probability >= 1 - delta = {1 - delta:g} over the draw of the "
              f"calibration set.")
    coverage = calibration["coverage"]  # as the certificate counts it: all items, ties included
    if certificate.groups:
        record = certificate.groups
        values = record["values"]
        abstaining = sorted(g for g, v in values.items() if v.get("abstains"))
        formal = (f"For every value g of {record['column']!r}: P(judge agrees with humans | group g, "
                  f"confidence >= lambda-hat_g) >= 1 - alpha = {1 - alpha:g}, all together with "
                  f"probability >= 1 - delta = {1 - delta:g} ({record.get('delta_split', '')}).")
        headline = (f"One threshold per {record['column']} ({len(values)} groups): when it decides, "
                    f"the judge agrees with the human annotators at least {percent(1 - alpha)} of "
                    f"the time within every group, with {percent(1 - delta)} confidence for all "
                    f"groups together; it decided {decided_phrase(calibration)}.")
        if abstaining:
            headline += (f" {len(abstaining)} group(s) certified nothing and escalate every item: "
                         + ", ".join(abstaining) + ".")
        headline += f" Items of a {record['column']} absent from calibration are escalated."
        return {"headline": headline, "formal": formal, "routing": "",
                "abstained": len(abstaining) == len(values)}
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
                f"{decided_phrase(calibration)} and escalated {percent(1 - coverage)}.")
    if len(thresholds) > 1:
        parts = [f"{name} decided {percent(share)}" for name, share in calibration["shares"].items()
                 if name != "escalated"]
        routing = ("On the calibration items: " + ", ".join(parts)
                   + f", and {percent(calibration['shares']['escalated'])} went to humans.")
    else:
        routing = ""
    if deployment is not None:
        routing += f" It decided {decided_phrase(deployment)}"
        if deployment.get("agreement_on_accepted") is not None:
            routing += (f" and agreed with the humans on {percent(deployment['agreement_on_accepted'])}"
                        f" of the {deployment.get('n_accepted')} of those the tie policy keeps")
        routing += "."
    return {"headline": headline, "formal": formal, "routing": routing.strip(), "abstained": False}
