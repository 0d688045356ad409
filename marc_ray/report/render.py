"""Write the report: self-contained HTML (plots as base64 PNG), a Markdown summary, the JSON.

:func:`write_report` is the one entry point: it calls :func:`summary.summarize` for the
numbers, draws the figures (``plots.py``), and writes, atomically, under ``out_dir``:

* ``report.html``: one file, no external resources (opens offline, attaches to an e-mail);
* ``report.md``: the same text as Markdown, with the figures as ``figures/*.png``;
* ``report.json``: every number shown (what tests check against the certificate);
* ``certificate.json``: the certificate itself, what ``marc-ray apply`` reads.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os

import numpy as np

from ..contracts import TIE_POLICIES, write_json_atomic, write_text_atomic
from ..contracts.io import join, json_safe, write_bytes_atomic
from ..contracts.redact import redact  # the one redaction, used everywhere a config is shown
from . import plots
from .summary import (ReportInputs, advice_text, counts_line, evaluation_of, percent, share_phrase,
                      summarize)


CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 1.6em; }
.headline { font-size: 1.25em; background: #eef6ee; border-left: 6px solid #1e8449; padding: 0.8em 1em; }
.headline.abstained { background: #fbeeee; border-left-color: #c0392b; }
.note { background: #fff8e1; border-left: 6px solid #d68910; padding: 0.6em 1em; margin: 0.6em 0; }
.warning { background: #fbeeee; border-left: 6px solid #c0392b; padding: 0.6em 1em; margin: 0.6em 0; }
.ok { color: #1e8449; } .bad { color: #c0392b; font-weight: bold; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f6f7; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; }
.figures figure { margin: 0; flex: 1 1 460px; } .figures img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.88em; color: #555; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; max-height: 420px; }
code { background: #f2f2f2; padding: 1px 4px; }
"""


# Marks the page once every figure has decoded, so a headless browser can check the rendering
# (tests/report/test_render_browser.py); the page works the same without JavaScript.
RENDER_CHECK = """<script>
window.addEventListener('load', function () {
  var broken = Array.prototype.filter.call(document.images, function (img) {
    return !img.complete || img.naturalWidth === 0; });
  document.body.setAttribute('data-render-check',
    broken.length === 0 ? 'ok:' + document.images.length : 'broken:' + broken.length);
});
</script>"""


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if math.isinf(value):
        return "+inf (nothing accepted)" if value > 0 else "-inf"
    if math.isnan(value):
        return "n/a"
    return f"{value:.{digits}g}"


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

def draw_figures(inputs: ReportInputs, summary: dict, curves_by_stage: list
                 ) -> list[tuple[str, str, object]]:
    """(file stem, caption, Figure) for every plot of the report (``curves_by_stage``: the
    evaluation's risk–coverage curves and certified points)."""
    certificate = inputs.certificate
    figures = []
    item_sets = [inputs.calibration] + ([inputs.deployment] if inputs.deployment is not None else [])
    for l, stage in enumerate(certificate.stages):
        name, measure = stage["name"], stage["confidence"]
        threshold = float(stage["threshold"])
        suffix = f" - {name}" if len(certificate.stages) > 1 else ""
        views = curves_by_stage[l] if l < len(curves_by_stage) else {}
        curves = {set_name: curve for set_name, (curve, _) in views.items() if curve is not None}
        points = {set_name: point for set_name, (_, point) in views.items() if point is not None}
        if curves:
            figures.append((f"risk_coverage_{l}", "Risk-coverage: the disagreement rate among the items "
                            "the judge decides, as more items are decided (most confident first). The "
                            "dot is the certified operating point.",
                            plots.plot_risk_coverage(curves, certificate.alpha, points,
                                                     title=f"Risk-coverage curve{suffix}")))
        entry = summary["diagnostics"]["stages"][l]
        scan = entry.get("scan")
        if scan:
            figures.append((f"threshold_scan_{l}", "Fixed-sequence testing: thresholds are tested from the "
                            "highest down; lambda-hat is the last one whose upper bound stays under alpha.",
                            plots.plot_threshold_scan(np.array(scan["grid"]), np.array(scan["risk"], float),
                                                      np.array(scan["bound"], float), np.array(scan["n"]),
                                                      certificate.alpha, threshold,
                                                      title=f"Threshold scan on the calibration set{suffix}")))
        monotone = entry.get("monotonicity")
        if monotone and monotone["n_bins"]:
            figures.append((f"reliability_{l}", "Reliability: observed agreement per confidence bin "
                            "(calibration set). A learned confidence ranks items and need not lie on the "
                            "diagonal; agreement should rise from left to right.",
                            plots.plot_reliability(np.array(monotone["mean_confidence"]),
                                                   np.array(monotone["agreement"]),
                                                   np.array(monotone["counts"]), measure,
                                                   title=f"Reliability diagram{suffix}")))
        samples = {items.name: items.confidence[:, l] for items in item_sets}
        figures.append((f"confidence_hist_{l}", "Confidence distributions with the certified threshold; "
                        "items left of lambda-hat are escalated.",
                        plots.plot_confidence_histograms(samples, threshold, measure,
                                                         title=f"Confidence histograms{suffix}")))
    shares = {summary["calibration"]["name"]: summary["calibration"]["shares"]}
    if summary["deployment"] is not None:
        shares[summary["deployment"]["name"]] = summary["deployment"]["shares"]
    figures.append(("routing", "Routing: which judge decided each item, and what was escalated to humans.",
                    plots.plot_routing(shares, [s["name"] for s in certificate.stages],
                                       title="Cascade routing" if len(certificate.stages) > 1
                                       else "Decided vs escalated")))
    frontier = summary.get("cost_coverage")
    if frontier:
        points = {row["name"]: {set_name: (figures_["cost"], figures_["coverage"])
                                for set_name, figures_ in row["sets"].items()}
                  for row in frontier["rows"]}
        figures.append(("cost_coverage", "Cost against certified coverage: the cascade and each judge "
                        "alone (filled: calibration, open: test); the dashed line joins the points no "
                        "other beats (cheaper and deciding more).",
                        plots.plot_cost_coverage(points, frontier["frontier"], frontier["unit"])))
    if inputs.measures:
        figures.append(("measures", "Confidence measures compared on held-out items: AUROC of the "
                        "confidence for predicting agreement (ranking risk = 1 - AUROC).",
                        plots.plot_measures(inputs.measures)))
    return figures


# ---------------------------------------------------------------------------------------------
# Tables shared by HTML and Markdown: (headers, rows) of plain strings
# ---------------------------------------------------------------------------------------------

def component_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    certificate = summary["certificate"]
    grid = certificate["grid"]
    grid_text = (f"{grid.get('kind', '?')}, {grid.get('n_points', len(grid.get('values', [])))} points "
                 f"from {_fmt(grid.get('high'))} down to {_fmt(grid.get('low'))}")
    headers = ["stage", "judge", "confidence measure", "threshold grid", "lambda-hat",
               "n (decided, after the tie policy)", "k (disagreements among n)", "k / n",
               f"upper bound ({percent(1 - certificate['delta'])})", "delta of stage",
               "coverage (of all calibration items)"]
    rows = []
    for stage in certificate["stages"]:
        n, k = stage.get("n"), stage.get("k")
        risk = (k / n) if isinstance(n, (int, float)) and n else None
        rows.append([str(len(rows) + 1), stage.get("judge", stage["name"]), stage["confidence"],
                     grid_text, "per group (see Per-group certificates)" if stage.get("grouped")
                     else _fmt(float(stage["threshold"])) + (
                         f" ({summary['readings'][stage['name']]})"
                         if stage["name"] in (summary.get("readings") or {}) else ""),
                     _fmt(n), _fmt(k), _fmt(risk),
                     _fmt(stage.get("upper_bound")), _fmt(stage.get("delta")),
                     percent(stage.get("coverage"))])
    return headers, rows


def routing_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    sets = [summary["calibration"]] + ([summary["deployment"]] if summary["deployment"] else [])
    names = [s["name"] for s in summary["certificate"]["stages"]] + ["escalated"]
    headers = ["item set", "items (ties included)"] + [f"decided by {n}" if n != "escalated" else "escalated"
                                       for n in names] + ["agreement on decided"]
    rows = [[s["name"], str(s["n"])] + [percent(s["shares"].get(n)) for n in names]
            + [agreement_cell(s)] for s in sets]
    return headers, rows


def agreement_cell(evaluated: dict) -> str:
    """Agreement on the decided labelled items, with the count it is a share of."""
    share = evaluated.get("agreement_on_accepted")
    n = evaluated.get("n_accepted")
    if share is None or not n:
        return percent(share)
    return f"{percent(share)} of {n} decided items (after the tie policy)"


def measures_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    measures = summary["measures"]
    keys = []
    for values in measures.values():
        keys += [k for k in values if k not in keys]
    return ["measure"] + keys, [[name] + [_fmt(values.get(k)) for k in keys]
                                for name, values in measures.items()]


def _figures_text(figures: dict | None) -> tuple[str, str]:
    if not figures:
        return "n/a", "n/a"
    return percent(figures.get("coverage")), percent(figures.get("agreement"))


def groups_section(summary: dict) -> tuple[list[tuple[str, str]], tuple[list[str], list[list[str]]]] | None:
    """Per-group thresholds, coverage and agreement next to one threshold for all."""
    groups = summary.get("groups")
    if not groups:
        return None
    target = 1 - summary["certificate"]["alpha"]
    sets = groups["sets"]
    headers = [groups["column"], "calibration items", "lambda-hat (per group)", "delta of group"]
    for name in sets:
        headers += [f"{name}: coverage per group / one threshold",
                    f"{name}: agreement per group / one threshold"]
    rows, paragraphs = [], []
    for name, row in groups["groups"].items():
        thresholds = ("unseen" if row["unseen"] else
                      " then ".join(_fmt(t) for t in row["thresholds"] or []))
        cells = [name, _fmt(row["n_calibration"]), thresholds, _fmt(row["delta"])]
        for item_set in sets:
            figures = row["sets"].get(item_set) or {}
            g_cov, g_agr = _figures_text(figures.get("grouped"))
            s_cov, s_agr = _figures_text(figures.get("single"))
            cells += [f"{g_cov} / {s_cov}", f"{g_agr} / {s_agr}"]
        rows.append(cells)
        needed = row.get("labels_needed")
        if row["abstains"] and not row["unseen"] and needed:
            rate = percent(needed.get("observed_disagreement"))
            text = f"Group {name!r} certified nothing (all its items are escalated): "
            if math.isfinite(float(needed.get("n_labelled", math.inf))):
                text += (f"at its observed disagreement rate {rate} it would need about "
                         f"{_fmt(needed.get('n_labelled'))} labelled items "
                         f"({_fmt(needed.get('n_accepted'))} accepted).")
            else:
                text += (f"its observed disagreement rate {rate} is at or above alpha, so no number "
                         f"of labels would certify it; it needs a better judge or measure.")
            paragraphs.append(("bad", text))
        if row["unseen"]:
            paragraphs.append(("warning", f"Group {name!r} was not in the calibration set: its "
                               f"items are escalated."))
        for item_set in row.get("over_accepted", []):
            agreement_single = row["sets"][item_set]["single"]["agreement"]
            paragraphs.append(("warning", f"One threshold for all over-accepts group {name!r} on "
                               f"the {item_set} items: agreement on its decided items "
                               f"{percent(agreement_single)} < {percent(target)}."))
    single = " then ".join(_fmt(t) for t in groups["single_thresholds"])
    paragraphs.insert(0, ("", f"Delta split: {groups.get('delta_split')}. For comparison, one "
                          f"threshold for all items, certified on the same calibration items with "
                          f"the whole delta: lambda-hat = {single}."))
    return paragraphs, (headers, rows)


def cost_coverage_section(summary: dict) -> tuple[str, tuple[list[str], list[list[str]]]] | None:
    """The cascade and each judge alone: expected cost per item beside certified coverage."""
    frontier = summary.get("cost_coverage")
    if not frontier:
        return None
    costs = ", ".join(f"{name} {_fmt(cost)}" for name, cost in frontier["costs"].items())
    if frontier["costs_given"]:
        text = f"Cost per item of each judge (calibrate.costs): {costs}."
    else:
        text = ("No costs were given (calibrate.costs): every judge counts 1, so the cost is the "
                "expected number of judge calls per item. Give calibrate.costs (e.g. a price per "
                "1k tokens) to compare prices.")
    text += (f" A cascade runs a judge only on the items no earlier judge decided: its expected "
             f"cost is the sum over judges of cost x share of items reaching it. Each judge alone is "
             f"{frontier['judges_alone']} and runs on every item: a comparison, not a certificate. On the frontier "
             f"(nothing cheaper decides more): {', '.join(frontier['frontier'])}.")
    headers = ["", "threshold(s)"]
    for set_name in frontier["sets"]:
        headers += [f"{set_name}: expected {frontier['unit']}", f"{set_name}: coverage",
                    f"{set_name}: agreement on decided"]
    headers.append("on the frontier")
    rows = []
    for row in frontier["rows"]:
        thresholds = row["thresholds"]
        shown = (" then ".join(_fmt(t) for t in thresholds) if isinstance(thresholds, list)
                 else "per group: " + ", ".join(f"{g} {_fmt(t)}" for g, t in thresholds.items()))
        if row["kind"] == "cascade" and summary["certificate"].get("groups"):
            shown = "per group (see above)"
        cells = [row["name"], shown]
        for set_name in frontier["sets"]:
            figures = row["sets"][set_name]
            cells += [_fmt(figures["cost"]), share_phrase(figures["n_decided"], figures["n"], "items"),
                      percent(figures["agreement"]) if figures["agreement"] is not None else "n/a"]
        cells.append("yes" if row["name"] in frontier["frontier"] else "no")
        rows.append(cells)
    return text, (headers, rows)


def _runs_text(runs: dict | None) -> str:
    if not runs:
        return "n/a"
    if runs.get("not_run") is None:  # no status recorded: a missing run may never have been made
        missing = f"{runs['unreadable']} missing (unreadable or not run)"
    else:
        missing = f"{runs['unreadable']} unreadable" + (f"; {runs['not_run']} not run (absent from "
                                                         f"the data)" if runs["not_run"] else "")
    return (f"{runs['runs']} runs: {runs['favour_a']} favour a, {runs['favour_b']} favour b, "
            f"{runs['even']} even, {missing}; mean P(a) {_fmt(runs['mean_p_a'], 3)}")


def escalations_section(summary: dict) -> tuple[str, list[tuple[str, tuple]]] | None:
    """A few escalated items per reason kind, with how the simulated annotators split."""
    escalations = summary.get("escalations")
    if not escalations or not escalations["examples"]:
        return None
    intro = (f"Escalated {escalations['item_set']} items by reason: "
             + ", ".join(f"{kind} {count}" for kind, count in escalations["counts"].items()) + ".")
    out = []
    for kind, examples in escalations["examples"].items():
        rows = [[e["id"], e["group"] or "", e.get("stage", ""), _fmt(e["confidence"]), e["reason"],
                 _runs_text(e["runs"])] for e in examples]
        out.append((kind, (["id", "group", "stage quoted", "confidence (that stage)", "reason",
                            "run vector (that stage)"], rows)))
    return intro, out


def fit_table(summary: dict) -> tuple[list[str], list[list[str]]] | None:
    """The margin gamma per epoch of each fitted model, and the epoch the collapse guard kept."""
    fit = summary.get("fit")
    if not fit or not any(v.get("gamma_history") for v in fit.values()):
        return None
    from ..fit.bound import bound_sentence

    rows = [[name, str(len(v["gamma_history"])), ", ".join(_fmt(g, 3) for g in v["gamma_history"]),
             "" if v.get("best_epoch") is None else str(int(v["best_epoch"]) + 1),
             _fmt(v.get("gamma")), bound_sentence(v.get("bound"))] for name, v in fit.items()]
    return ["judge", "epochs", "gamma per epoch", "kept epoch", "gamma of the kept epoch",
            "MARC's generalization bound on the ranking risk (unit constants)"], rows


def choice_section(summary: dict) -> tuple[str, tuple[list[str], list[list[str]]]] | None:
    """``confidence: auto``: the measure chosen on training data and the scores behind it."""
    choice = summary.get("confidence_choice")
    if not choice:
        return None
    text = (f"calibrate.confidence: auto chose {choice['choice']} on {choice.get('n_validation')} "
            f"items of {choice.get('validation', 'the training split')} (never calibration items), "
            f"by {choice['criterion']} at alpha = {_fmt(choice['alpha'])}, delta = "
            f"{_fmt(choice['delta'])}, scaled to {choice.get('n_calibration')} calibration items.")
    text += " " + prediction_text(choice, summary["certificate"].get("coverage"))
    keys = ["predicted_coverage", "predicted_threshold", "grid_auroc", "validation_auroc"]
    rows = [[name] + [_fmt(choice["scores"][name].get(k)) for k in keys] for name in choice["ranking"]]
    return text, (["measure"] + keys, rows)


def prediction_text(choice: dict, certified_coverage: float | None) -> str:
    """The chosen measure's predicted coverage with its interval, or why it cannot be trusted
    (``too_small_to_predict``); a record without an interval (older certificates) says so."""
    point = (choice.get("scores", {}).get(choice.get("choice"), {}) or {}).get("predicted_coverage")
    interval = choice.get("predicted_coverage_interval")
    name = choice.get("choice")
    if not interval or len(interval) != 2 or any(v is None for v in interval):
        text = (f"Predicted certified coverage of {name}: {percent(point)}, with no interval "
                f"recorded (a certificate written before intervals): treat it as a rough guide.")
    else:
        text = (f"Predicted certified coverage of {name}: {percent(point)}, interval "
                f"[{percent(interval[0])}, {percent(interval[1])}] "
                f"({choice.get('interval_method', 'method not recorded')}).")
    if choice.get("too_small_to_predict"):
        text += (" TOO SMALL TO PREDICT: " + (choice.get("note") or f"the validation part has "
                 f"{choice.get('n_validation')} items") + ".")
    elif choice.get("note"):
        text += f" ({choice['note']}.)"
    if certified_coverage is not None:
        text += f" The certificate's coverage on the calibration items: {percent(certified_coverage)}."
    return text


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    clean = lambda text: str(text).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(clean(h) for h in headers) + " |",
             "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _diagnostic_paragraphs(summary: dict) -> list[tuple[str, str]]:
    """(css class, sentence) for each diagnostic of each stage."""
    out = []
    for entry in summary["diagnostics"]["stages"]:
        prefix = f"{entry['name']} ({entry['confidence']}): " if len(summary["diagnostics"]["stages"]) > 1 else ""
        monotone = entry.get("monotonicity")
        if monotone and monotone["n_bins"]:
            text = (f"{prefix}Monotonicity: agreement was measured in {monotone['n_bins']} confidence "
                    f"bins of about equal count on the {sum(monotone['counts'])} calibration items "
                    f"used (a tied confidence value is never split between bins); it drops "
                    f"{monotone['violations']} time(s) from one bin to the next as the mean "
                    f"confidence rises "
                    f"({monotone['significant_violations']} drop(s) larger than 1.96 standard errors; "
                    f"Spearman correlation of bin confidence and agreement {_fmt(monotone['spearman'], 3)}). ")
            text += ("A non-monotone confidence does not void the guarantee, but it costs coverage."
                     if monotone["violations"] else "Agreement rises with confidence, as it should.")
            out.append(("bad" if monotone["significant_violations"] else "", text))
        size = entry.get("size")
        if size:
            out.append(("" if size["adequate"] else "bad", f"{prefix}Calibration size: {size['message']}"))
        drift_entry = entry.get("drift")
        if drift_entry:
            text = f"{prefix}Drift: {drift_entry['message']}"
            if "coverage_deployment" in drift_entry:
                text += (f" Share above lambda-hat: {percent(drift_entry['coverage_calibration'])} of "
                         f"calibration vs {percent(drift_entry['coverage_deployment'])} of deployment items.")
            out.append(("warning" if drift_entry["fired"] else "", text))
    return out


def _reproducibility(summary: dict) -> dict:
    manifest = redact(summary.get("manifest") or {})
    return {"command": manifest.get("command", ""), "config": manifest.get("config_text", ""),
            "hashes": manifest.get("hashes", {}), "versions": manifest.get("versions", {}),
            "seeds": manifest.get("seeds", {}), "run": {k: v for k, v in manifest.items()
                                                        if k in ("run_dir", "created", "wall_s", "host_cpus")}}


# ---------------------------------------------------------------------------------------------
# HTML and Markdown
# ---------------------------------------------------------------------------------------------

def _extra_html(summary: dict) -> list[str]:
    """Per-group certificates, cost beside coverage, the measure's choice, gamma per epoch,
    escalations by reason."""
    e = html.escape
    parts = []
    section = groups_section(summary)
    if section:
        paragraphs, table = section
        parts.append("<h2 id='groups'>Per-group certificates</h2>")
        parts += [f"<{'div' if c == 'warning' else 'p'} class='{c}'>{e(t)}</{'div' if c == 'warning' else 'p'}>"
                  for c, t in paragraphs]
        parts.append(_html_table(*table))
    costs = cost_coverage_section(summary)
    if costs:
        parts.append("<h2 id='cost-coverage'>Cost beside coverage</h2>")
        parts += [f"<p>{e(costs[0])}</p>", _html_table(*costs[1])]
    choice = choice_section(summary)
    if choice:
        parts.append("<h3 id='confidence-choice'>Choice of the confidence measure</h3>")
        parts += [f"<p>{e(choice[0])}</p>", _html_table(*choice[1])]
    gamma = fit_table(summary)
    if gamma:
        parts.append("<h3 id='gamma'>Margin gamma per epoch</h3>")
        parts.append(_html_table(*gamma))
    escalations = escalations_section(summary)
    if escalations:
        parts.append("<h3 id='escalations'>Escalated items by reason</h3>")
        parts.append(f"<p>{e(escalations[0])}</p>")
        for kind, table in escalations[1]:
            parts += [f"<h4>{e(kind)}</h4>", _html_table(*table)]
    return parts


def _extra_markdown(summary: dict) -> list[str]:
    lines = []
    section = groups_section(summary)
    if section:
        paragraphs, table = section
        lines += ["## Per-group certificates", ""]
        lines += [("**Warning.** " if c == "warning" else "") + t + "\n" for c, t in paragraphs]
        lines += [_md_table(*table), ""]
    costs = cost_coverage_section(summary)
    if costs:
        lines += ["## Cost beside coverage", "", costs[0], "", _md_table(*costs[1]), ""]
    choice = choice_section(summary)
    if choice:
        lines += ["### Choice of the confidence measure", "", choice[0], "", _md_table(*choice[1]), ""]
    gamma = fit_table(summary)
    if gamma:
        lines += ["### Margin gamma per epoch", "", _md_table(*gamma), ""]
    escalations = escalations_section(summary)
    if escalations:
        lines += ["### Escalated items by reason", "", escalations[0], ""]
        for kind, table in escalations[1]:
            lines += [f"#### {kind}", "", _md_table(*table), ""]
    return lines


def render_html(summary: dict, figures: list[tuple[str, str, str]]) -> str:
    """The report as one HTML page; ``figures`` holds (stem, caption, base64 PNG)."""
    certificate = summary["certificate"]
    guarantee = summary["guarantee"]
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{e(summary['title'])}</title><style>{CSS}</style></head><body>",
             f"<h1>{e(summary['title'])}</h1>",
             f"<p>alpha = {_fmt(certificate['alpha'])}, delta = {_fmt(certificate['delta'])}, "
             f"procedure: {e(certificate['procedure'])}, tie policy: {e(certificate['tie_policy'])}, "
             f"{e(counts_line(summary))}.</p>"]
    parts += [f"<div class='note'>{e(note)}</div>" for note in summary["notes"]]
    parts.append("<h2>The guarantee</h2>")
    parts.append(f"<p class='headline{' abstained' if guarantee['abstained'] else ''}' id='headline'>"
                 f"{e(guarantee['headline'])}</p>")
    parts.append(f"<p>Formally: <code>{e(guarantee['formal'])}</code></p>")
    if guarantee["routing"]:
        parts.append(f"<p>{e(guarantee['routing'])}</p>")
    parts.append("<p>What happens when no threshold passes: the certificate abstains "
                 "(lambda-hat = +inf), the judge decides nothing and every item is escalated; "
                 "marc_ray never falls back to accepting.</p>")

    parts.append("<h2>Components</h2>")
    parts.append(_html_table(*component_table(summary)))
    parts.append(f"<p>Delta split across stages: {e(str(certificate.get('delta_split', '')))}. "
                 f"Tie policy <code>{e(certificate['tie_policy'])}</code>: "
                 f"{e(TIE_POLICIES.get(certificate['tie_policy'], ''))}.</p>")
    parts.append("<h3>Routing</h3>")
    parts.append(_html_table(*routing_table(summary)))
    if summary["consistency"]:
        rows = [[c["stage"], c["quantity"], str(c["certificate"]), str(c["recomputed"]),
                 "matches" if c["match"] else "MISMATCH"] for c in summary["consistency"]]
        parts.append("<h3>Consistency check</h3><p>n and k at lambda-hat recomputed from the scored "
                     "calibration items:</p>")
        parts.append(_html_table(["stage", "quantity", "certificate", "recomputed", "result"], rows))

    parts += _extra_html(summary)
    parts.append("<h2>Plots</h2><div class='figures'>")
    for stem, caption, png in figures:
        parts.append(f"<figure id='fig-{e(stem)}'><img alt='{e(stem)}' src='data:image/png;base64,{png}'>"
                     f"<figcaption>{e(caption)}</figcaption></figure>")
    parts.append("</div>")

    parts.append("<h2>Diagnostics</h2>")
    for css, text in _diagnostic_paragraphs(summary):
        tag = "div" if css == "warning" else "p"
        parts.append(f"<{tag} class='{css}'>{e(text)}</{tag}>")
    if summary["measures"]:
        parts.append("<h3>Confidence measures on held-out items</h3>")
        advice = advice_text(summary)
        if advice:
            tag = "div" if advice[0] == "warning" else "p"
            parts.append(f"<{tag} class='{advice[0]}' id='measure-advice'>{e(advice[1])}</{tag}>")
        parts.append(_html_table(*measures_table(summary)))

    parts.append("<h2>Assumptions</h2><ul>")
    parts += [f"<li>{e(a)}</li>" for a in certificate.get("assumptions", [])]
    parts.append("</ul>")

    repro = _reproducibility(summary)
    parts.append("<h2>Reproducibility</h2>")
    if repro["command"]:
        parts.append(f"<p>Reproduce with: <code>{e(repro['command'])}</code></p>")
    for title, mapping in (("Hashes", repro["hashes"]), ("Package versions", repro["versions"]),
                           ("Seeds", repro["seeds"]), ("Run", repro["run"])):
        if mapping:
            parts.append(f"<h3>{title}</h3>")
            parts.append(_html_table(["name", "value"], [[k, _fmt(v)] for k, v in mapping.items()]))
    if repro["config"]:
        parts.append(f"<h3>Configuration</h3><pre>{e(repro['config'])}</pre>")
    parts.append("<h2>Certificate (JSON)</h2>")
    shown = dict(certificate)
    shown["extra"] = {k: (f"<{len(v)} values>" if isinstance(v, (list, dict)) and len(json.dumps(v)) > 400
                          else v) for k, v in (certificate.get("extra") or {}).items()}
    parts.append(f"<pre id='certificate'>{e(json.dumps(json_safe(shown), indent=2))}</pre>")
    parts.append(RENDER_CHECK)
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(summary: dict, figure_files: list[tuple[str, str]]) -> str:
    """The report as Markdown; ``figure_files`` holds (relative PNG path, caption)."""
    certificate = summary["certificate"]
    guarantee = summary["guarantee"]
    lines = [f"# {summary['title']}", "",
             f"alpha = {_fmt(certificate['alpha'])}, delta = {_fmt(certificate['delta'])}, procedure: "
             f"{certificate['procedure']}, tie policy: {certificate['tie_policy']}, "
             f"{counts_line(summary)}.", ""]
    lines += [f"> **Note.** {note}\n" for note in summary["notes"]]
    lines += ["## The guarantee", "", f"**{guarantee['headline']}**", "", f"Formally: `{guarantee['formal']}`", ""]
    if guarantee["routing"]:
        lines += [guarantee["routing"], ""]
    lines += ["## Components", "", _md_table(*component_table(summary)), "",
              "### Routing", "", _md_table(*routing_table(summary)), ""]
    lines += _extra_markdown(summary)
    lines += ["## Diagnostics", ""]
    lines += [("**Warning.** " if css == "warning" else "") + text + "\n"
              for css, text in _diagnostic_paragraphs(summary)]
    if summary["measures"]:
        lines += ["### Confidence measures on held-out items", ""]
        advice = advice_text(summary)
        if advice:
            lines += [("**Warning.** " if advice[0] == "warning" else "") + advice[1], ""]
        lines += [_md_table(*measures_table(summary)), ""]
    lines += ["## Plots", ""] + [f"![{caption}]({path})\n" for path, caption in figure_files]
    lines += ["## Assumptions", ""] + [f"- {a}" for a in certificate.get("assumptions", [])] + [""]
    repro = _reproducibility(summary)
    lines += ["## Reproducibility", ""]
    if repro["command"]:
        lines += [f"Reproduce with: `{repro['command']}`", ""]
    for title, mapping in (("Hashes", repro["hashes"]), ("Package versions", repro["versions"]),
                           ("Seeds", repro["seeds"])):
        if mapping:
            lines += [f"### {title}", "", _md_table(["name", "value"], [[k, _fmt(v)] for k, v in mapping.items()]), ""]
    lines += ["The full certificate is in `certificate.json`; every number above is in `report.json`.", ""]
    return "\n".join(lines)


def write_report(inputs: ReportInputs, out_dir: str | os.PathLike) -> dict[str, str]:
    """Compute, draw and write the report; returns the paths written (by kind)."""
    out_dir = os.fspath(out_dir)
    evaluation = evaluation_of(inputs)
    summary = summarize(inputs, evaluation)
    summary["manifest"] = redact(summary["manifest"])  # before anything shows it
    figures = draw_figures(inputs, summary, evaluation["curves"])
    encoded = [(stem, caption, plots.to_png_base64(figure)) for stem, caption, figure in figures]
    figure_files = [(f"figures/{stem}.png", caption) for stem, caption, _ in encoded]
    paths = {"html": join(out_dir, "report.html"), "markdown": join(out_dir, "report.md"),
             "json": join(out_dir, "report.json"), "certificate": join(out_dir, "certificate.json")}
    # everything is rendered before the first file is written: a failure leaves nothing behind
    html_text, markdown_text = render_html(summary, encoded), render_markdown(summary, figure_files)
    for stem, _, png in encoded:
        write_bytes_atomic(base64.b64decode(png), join(out_dir, "figures", f"{stem}.png"))
    write_text_atomic(html_text, paths["html"])
    write_text_atomic(markdown_text, paths["markdown"])
    write_json_atomic(summary, paths["json"])
    inputs.certificate.write(paths["certificate"])
    return paths
