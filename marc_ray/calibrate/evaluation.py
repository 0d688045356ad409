"""What a certificate does on labelled items: every number the report shows, computed here.

The report (``marc_ray.report``) only formats; this module routes the calibration and test
items through the certificate (``routing.route``), recomputes each stage's n and k at λ̂ to check
the certificate, scans the grid, draws the risk–coverage curves, runs the diagnostics
(monotonicity, calibration size, drift) and compares the confidence measures by certifying each
one with the certificate's α, δ and kind of grid. The pipeline's report stage and
``marc-ray report`` call :func:`evaluate_certificate` (and :func:`compare_certified_measures`) and hand the
result to the report. A per-group certificate routes each item by its group (``decide.decide``);
:func:`evaluate_groups` sets every group's figures next to those of one threshold for all, and
:func:`escalation_examples` picks a few escalated items per reason with their run vectors.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pyarrow as pa

from ..contracts import Certificate, ItemSet, agreement
from .bounds import clopper_pearson_upper
from .cost_coverage import certificate_costs, cost_coverage
from .diagnostics import calibration_size, drift, monotonicity
from .calibrator import SelectiveCalibrator
from .config import CalibrateConfig
from .grid import ThresholdGrid, counts_at_thresholds, quantile_grid
from ..metrics import aurc, auroc, risk_coverage_curve
from .routing import certificate_thresholds, route


def route_items(certificate: Certificate, items: ItemSet):
    """Where each item goes: ``routing.route``, or for a per-group certificate each item by its
    group's thresholds (``decide.decide``; an item of an unseen group is escalated)."""
    if certificate.groups:
        from .decide import decide

        groups = items.groups if items.groups is not None else np.full(len(items.confidence), None)
        return decide(certificate, items.confidence, items.pred, groups=groups)
    return route(certificate, items.confidence, items.pred)


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
    routing = route_items(certificate, items)
    names = [stage["name"] for stage in certificate.stages]
    n = len(routing.stage)
    out = {"name": items.name, "n": n,
           "n_decided": int(routing.accepted.sum()),  # of all n items, ties included
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
    routing = route_items(certificate, items)
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
    curve : (coverage, risk) arrays (at most ``CURVE_POINTS`` points of the exact curve,
        :func:`thin_curve`), or None when no item has a finite confidence
    point : (coverage, risk) at λ̂, or None (nothing accepted, or λ̂ = inf)
    """
    threshold = float(certificate.stages[stage]["threshold"])
    confidence, agree = stage_view(certificate, items, stage)
    finite = np.isfinite(confidence)
    if not finite.any():
        return None, None
    curve = thin_curve(*risk_coverage_curve(confidence[finite], agree[finite]))
    point = None
    if math.isfinite(threshold):
        accepted = confidence[finite] >= threshold
        if accepted.any():
            point = (float(accepted.mean()), float(1 - agree[finite][accepted].mean()))
    return curve, point


CURVE_POINTS = 2_000  # points of a risk–coverage curve the report draws (one per item before)


def thin_curve(coverage: np.ndarray, risk: np.ndarray, points: int = CURVE_POINTS
               ) -> tuple[np.ndarray, np.ndarray]:
    """At most ``points`` evenly spaced points of an exact curve, its first and last kept: a
    figure of a million items needs no million-vertex line (what the report draws)."""
    if coverage.size <= points:
        return coverage, risk
    keep = np.unique(np.linspace(0, coverage.size - 1, points).round().astype(np.int64))
    return coverage[keep], risk[keep]


def evaluate_certificate(certificate: Certificate, calibration_items: ItemSet,
                         deployment_items: ItemSet | None = None,
                         drift_significance: float = CalibrateConfig.drift_significance) -> dict:
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
    from ..contracts.align import as_objects

    splits = as_objects(table.column("split"))  # one Python string per value, not per row
    held_out = "test" if (splits == "test").any() else "calibration"
    labels = as_objects(table.column("human_label"))
    pred = as_objects(table.column("pred"))
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


# ---------------------------------------------------------------------------------------------
# Per-group certificates, and the escalated items behind each reason
# ---------------------------------------------------------------------------------------------

def _decided_figures(stage: np.ndarray, verdict: np.ndarray, human_label, tie_policy: str) -> dict:
    """Coverage (all items) and agreement on the decided, labelled items."""
    n = len(stage)
    accepted = stage >= 0
    out = {"n": n, "coverage": float(accepted.mean()) if n else math.nan, "agreement": None}
    if human_label is not None and accepted.any():
        agree, _ = agreement(verdict[accepted], np.asarray(human_label, dtype=object)[accepted],
                             tie_policy)
        out["agreement"] = float(agree.mean()) if agree.size else None
    return out


def single_threshold_thresholds(certificate: Certificate,
                                calibration_items: ItemSet) -> np.ndarray:
    """The thresholds one certificate for all groups would get: the same α, δ, grid and
    procedure on the same calibration items, groups ignored (what the groups are compared with)."""
    from .cascade import CascadeCalibrator

    grid = ThresholdGrid(certificate.grid["values"], kind="fixed")
    names = [stage["name"] for stage in certificate.stages]
    cascade = CascadeCalibrator(alpha=certificate.alpha, delta=certificate.delta, grid=grid,
                                procedure=certificate.procedure, tie_policy=certificate.tie_policy)
    cascade.calibrate(calibration_items.confidence, calibration_items.pred,
                      calibration_items.human_label, names=names)
    return np.asarray(cascade.thresholds_, dtype=float)


def evaluate_groups(certificate: Certificate, calibration_items: ItemSet,
                    deployment_items: ItemSet | None = None) -> dict | None:
    """Every group's thresholds, coverage and agreement, next to one threshold for all.

    Returns
    -------
    dict or None (a certificate without groups)
        ``column``, ``delta_split``, ``single_thresholds`` (:func:`single_threshold_thresholds`),
        ``sets`` (item-set names) and ``groups``: per group ``thresholds``, ``delta``,
        ``n_calibration``, ``abstains``, ``labels_needed``, ``unseen`` (not in the
        certificate), and per item set ``grouped`` and ``single`` figures (``n``, ``coverage``,
        ``agreement`` on the decided labelled items); ``over_accepted`` lists the item sets where
        the single threshold's agreement on that group falls below 1 − α while it decides some.
    """
    if not certificate.groups:
        return None
    record = certificate.groups
    target = 1 - certificate.alpha
    single = single_threshold_thresholds(certificate, calibration_items)
    item_sets = [s for s in (calibration_items, deployment_items) if s is not None]
    rows: dict = {}
    for name, entry in record["values"].items():
        rows[name] = {"thresholds": [float(st["threshold"]) for st in entry["stages"]],
                      "delta": entry.get("delta"), "n_calibration": entry.get("n_calibration"),
                      "abstains": bool(entry.get("abstains")),
                      "labels_needed": entry.get("labels_needed"), "unseen": False, "sets": {}}
    for items in item_sets:
        groups = (np.asarray([None if g is None else str(g) for g in items.groups], dtype=object)
                  if items.groups is not None else np.full(len(items.confidence), None, dtype=object))
        grouped = route_items(certificate, items)
        one = route(single, items.confidence, items.pred)
        for name in sorted({g for g in groups.tolist() if g is not None} | set(rows)):
            members = groups == name
            row = rows.setdefault(name, {"thresholds": None, "delta": None, "n_calibration": 0,
                                         "abstains": True, "labels_needed": None, "unseen": True,
                                         "sets": {}})
            labels = items.human_label[members] if items.human_label is not None else None
            row["sets"][items.name] = {
                "grouped": _decided_figures(grouped.stage[members], grouped.verdict[members], labels,
                                            certificate.tie_policy),
                "single": _decided_figures(one.stage[members], one.verdict[members], labels,
                                           certificate.tie_policy)}
    for row in rows.values():
        row["over_accepted"] = [name for name, figures in row["sets"].items()
                                if figures["single"]["agreement"] is not None
                                and figures["single"]["agreement"] < target]
    return {"column": record["column"], "delta_split": record.get("delta_split"),
            "single_thresholds": single.tolist(), "sets": [s.name for s in item_sets],
            "groups": rows}


def run_vector_summary(probs, status=None) -> dict:
    """How an item's runs split: runs favouring a (P(a) > 0.5), b (< 0.5), even, unreadable,
    and not run (``status`` "missing: not run": a run the data never had, e.g. an order a
    replayed data set does not record; ``None`` when no status is known, and then
    ``unreadable`` counts every missing run)."""
    from .reasons import NOT_RUN

    values = np.asarray([np.nan if p is None else float(p) for p in (probs or [])], dtype=float)
    readable = values[np.isfinite(values)]
    not_run = None
    if status is not None:
        never = np.asarray([s == NOT_RUN for s in status], dtype=bool)
        not_run = int((never & ~np.isfinite(values)).sum()) if never.size == values.size else None
    return {"runs": int(values.size) - (not_run or 0), "favour_a": int((readable > 0.5).sum()),
            "favour_b": int((readable < 0.5).sum()), "even": int((readable == 0.5).sum()),
            "unreadable": int(values.size - readable.size) - (not_run or 0), "not_run": not_run,
            "mean_p_a": float(readable.mean()) if readable.size else None}


def escalation_examples(certificate: Certificate, items: ItemSet, runs=None,
                        per_kind: int = 3, run_vectors=None) -> dict:
    """A few escalated items per reason kind, with their reason and run-vector summary.

    An escalated item's reason quotes one stage (``reasons.explain``: the last one of a
    cascade); the example's ``stage``, ``confidence`` and ``runs`` describe that same stage.

    Parameters
    ----------
    certificate : Certificate
    items : ItemSet
        With ``ids`` (and ``groups`` for a per-group certificate).
    runs : pyarrow.Table, or list of (pyarrow.Table or None) per stage, optional
        Run vectors with ``id``, ``probs`` and optionally ``status`` (one table: the first
        judge's). They give the no-verdict counts (``reasons.count_unreadable``, vectorised)
        and, for the examples only, :func:`run_vector_summary` (None where the quoted stage's
        runs are not given). Or ``id`` and the counts already taken (``run_counts.
        COUNT_COLUMNS``, streamed from a file by ``run_counts.file_run_counts``), with
    run_vectors : list (per stage) of callables ids → {id: (vector, statuses)}, optional
        The examples' vectors, fetched by id (``run_counts.file_run_vectors``).
    per_kind : int, default=3
        The first ``per_kind`` escalated items of each kind, in item order.
    run_vectors : callable, optional
        ids → {id: run vector} (``run_counts.file_run_vectors`` of the scored file): the
        examples' vectors when ``runs`` holds counts, not vectors.

    Returns
    -------
    dict
        ``item_set``, ``counts`` (escalated items per kind) and ``examples``: kind → list of
        {``id``, ``group``, ``stage`` (the stage the reason quotes), ``confidence`` (that
        stage's), ``reason``, ``runs`` (that stage's summary, or None)}.
    """
    from .decide import decide_in_slices

    n = len(items.confidence)
    names = [stage["name"] for stage in certificate.stages]
    ids = [str(i) for i in (items.ids if items.ids is not None else range(n))]
    tables = list(runs) if isinstance(runs, (list, tuple)) else [runs]
    tables += [None] * (len(names) - len(tables))
    located = [_runs_of(table, ids) for table in tables]
    unreadable = total = None
    if any(entry is not None for entry in located):
        unreadable = np.stack([e[1] if e else np.zeros(n, np.int64) for e in located], axis=1)
        total = np.stack([e[2] if e else np.zeros(n, np.int64) for e in located], axis=1)
    groups = items.groups if items.groups is not None else np.full(n, None, dtype=object)
    quoted = len(names) - 1  # an escalated item's reason describes the last stage
    counts: dict = {}
    examples: dict = {}
    # decided a slice at a time (each item's reason depends on it alone): the reasons of every
    # item as Python strings at once cost ~1 GB at a million items (issue 22)
    for start, decided in decide_in_slices(certificate, items.confidence, items.pred,
                                           groups=groups if certificate.groups else None,
                                           runs_unreadable=unreadable, runs_total=total):
        for offset in np.flatnonzero(decided.stage < 0):
            position = start + int(offset)
            kind = str(decided.kind[offset])
            counts[kind] = counts.get(kind, 0) + 1
            if len(examples.setdefault(kind, [])) < per_kind:
                confidence = float(items.confidence[position, quoted])
                examples[kind].append({
                    "id": ids[position],
                    "group": None if groups[position] is None else str(groups[position]),
                    "stage": names[quoted],
                    "confidence": confidence if math.isfinite(confidence) else None,
                    "reason": str(decided.reason[offset]),
                    "runs": _run_summary_at(tables[quoted], located[quoted], position)})
    fetch = (list(run_vectors) + [None] * len(names))[quoted] if run_vectors else None
    if fetch is not None:  # counts were streamed: the few examples' vectors are read by id
        chosen = [example for kind in examples.values() for example in kind if example["runs"] is None]
        vectors = fetch([example["id"] for example in chosen]) if chosen else {}
        for example in chosen:
            if example["id"] in vectors:
                example["runs"] = run_vector_summary(*vectors[example["id"]])
    return {"item_set": items.name, "counts": counts, "examples": examples}


def _runs_of(runs: pa.Table | None, ids: list[str]):
    """(row of each item in ``runs`` or -1, unreadable runs, runs made) per item; None without runs."""
    if runs is None:
        return None
    import pyarrow.compute as pc

    from .reasons import count_unreadable

    rows = pc.index_in(pa.array(ids, pa.string()),
                       value_set=runs.column("id").cast(pa.string())).to_numpy(zero_copy_only=False)
    found = ~np.isnan(rows.astype(float))
    rows = np.where(found, rows, -1).astype(np.int64)
    if "probs" in runs.column_names:
        status = runs.column("status") if "status" in runs.column_names else None
        bad, count = count_unreadable(runs.column("probs"), status)
    else:  # counts streamed from the file (run_counts.file_run_counts)
        from .run_counts import COUNT_COLUMNS

        bad, count = (runs.column(c).to_numpy(zero_copy_only=False) for c in COUNT_COLUMNS)
    return (rows, np.where(found, bad[np.maximum(rows, 0)], 0),
            np.where(found, count[np.maximum(rows, 0)], 0))


def _run_summary_at(runs: pa.Table | None, located, position: int) -> dict | None:
    if runs is None or located is None or located[0][position] < 0 or "probs" not in runs.column_names:
        return None
    row = int(located[0][position])
    status = runs.column("status")[row].as_py() if "status" in runs.column_names else None
    return run_vector_summary(runs.column("probs")[row].as_py(), status)


def evaluate_run(certificate: Certificate, sets: dict, score_path: str,
                 compare: Sequence[str] | None = None,
                 drift_significance: float = CalibrateConfig.drift_significance,
                 stage_score_paths: Sequence[str] | None = None) -> dict:
    """Every number a run's report shows, from its certificate and its aligned items.

    Parameters
    ----------
    certificate : the run's certificate
    sets : split name → ItemSet (``contracts.align.aligned_sets`` on the run's scored files)
    score_path : the first judge's scored file (the measures compared, the escalated items' runs)
    compare : the confidence measures compared; default: the certified one
    drift_significance : the drift warning's level
    stage_score_paths : every stage's scored file, in cascade order (a cascade's escalated items
        quote the last stage: its run vectors are read from here); default: only the first

    Returns
    -------
    dict
        ``evaluation`` (:func:`evaluate_certificate` on the calibration and test splits),
        ``measures`` (:func:`compare_certified_measures`), ``groups`` (:func:`evaluate_groups`;
        None without per-group thresholds), ``escalations`` (:func:`escalation_examples` on
        the test split, else the calibration split) and ``cost_coverage``
        (:func:`~marc_ray.calibrate.cost_coverage.cost_coverage` with the certificate's
        ``extra.costs``; None for one judge).
    """
    compare = list(compare or [certificate.stages[0]["confidence"]])
    deployment = sets.get("test")
    evaluation = evaluate_certificate(certificate, sets["calibration"], deployment,
                                      drift_significance)
    # the scalar columns; each stage's run counts streamed batch by batch (the run vectors,
    # most of a scored file, are never held whole: issue 22), and the examples' vectors by id
    from ..contracts import read_columns
    from .run_counts import file_run_counts, file_run_vectors

    scores = read_columns(score_path, ["id", "split", "human_label", "pred", *compare])
    paths = [score_path, *list(stage_score_paths or [])[1:]]
    runs = [file_run_counts(path) for path in paths]
    fetchers = [lambda wanted, path=path: file_run_vectors(path, wanted) for path in paths]
    return {"evaluation": evaluation,
            "measures": compare_certified_measures(scores, compare, certificate),
            "groups": evaluate_groups(certificate, sets["calibration"], deployment),
            "escalations": escalation_examples(certificate, deployment or sets["calibration"],
                                               runs, run_vectors=fetchers),
            "cost_coverage": cost_coverage(certificate, sets["calibration"], deployment,
                                           certificate_costs(certificate))}


# ---------------------------------------------------------------------------------------------
# Does the certified measure rank below another? And what would ``confidence: auto`` choose?
# ---------------------------------------------------------------------------------------------

def measure_advice(certificate: Certificate, measures: dict, score_path: str | None = None,
                   validation_ids: Sequence[str] | None = None, grid_values=None) -> dict | None:
    """Where the certified measure ranks by held-out AUROC, and the measure ``auto`` chooses.

    Parameters
    ----------
    certificate : Certificate
    measures : dict
        :func:`compare_certified_measures`'s result (held-out ``auroc`` per measure).
    score_path : str, optional
        The first judge's scored file; without it (or when the certificate already records an
        ``auto`` choice) ``auto`` is not re-run.
    validation_ids : sequence of str, optional
        The fitted model's validation part (``MarcConfidence.valid_ids_``): ``auto`` reads only
        those training rows, exactly as ``calibrate.stage.choose_run_confidence`` does; without
        them it reads the whole training split (and the note says so).
    grid_values : the fixed grid ``auto`` scans; default: the certificate's grid when fixed,
        else 100 points on [0.5, 1].

    Returns
    -------
    dict or None (fewer than two measures with a finite AUROC)
        ``certified``, ``ranking`` (measures by held-out AUROC, best first), ``aurocs``,
        ``ranks_below`` (measures that rank above the certified one), ``auto_choice`` (None
        when it could not be computed), ``auto_source`` ("certificate", or a description of
        the rows it read) and ``auto_error`` (why it could not).
    """
    certified = certificate.stages[0]["confidence"]
    aurocs = {name: float(entry["auroc"]) for name, entry in measures.items()
              if isinstance(entry.get("auroc"), (int, float)) and math.isfinite(entry["auroc"])}
    if certified not in aurocs or len(aurocs) < 2:
        return None
    ranking = sorted(aurocs, key=lambda name: -aurocs[name])
    out = {"certified": certified, "ranking": ranking, "aurocs": aurocs,
           "ranks_below": [name for name in ranking if aurocs[name] > aurocs[certified]],
           "auto_choice": None, "auto_source": None, "auto_error": None}
    recorded = (certificate.extra or {}).get("confidence_choice")
    if recorded:
        out["auto_choice"], out["auto_source"] = recorded.get("choice"), "certificate"
        return out
    if score_path is None:
        return out
    try:
        out["auto_choice"], out["auto_source"] = _auto_choice(certificate, list(measures), score_path,
                                                              validation_ids, grid_values)
    except (ValueError, KeyError) as error:  # ContractError is a ValueError: say why, go on
        out["auto_error"] = " ".join(str(error).split())
    return out


def _auto_choice(certificate: Certificate, candidates: list, score_path: str,
                 validation_ids, grid_values) -> tuple[str, str]:
    """``auto``'s choice on the training rows of ``score_path`` (never a calibration row)."""
    from ..contracts import read_columns
    from .grid import fixed_grid
    from .select import choose_confidence_table

    import pyarrow.compute as pc

    from .select import _TRAINING_SPLITS

    table = read_columns(score_path, ["id", "split", "pred", "human_label", *candidates])
    n_calibration = pc.sum(pc.equal(table.column("split"), "calibration")).as_py() or 0
    # only the rows choose_confidence_table keeps (training splits, the validation part), kept
    # here with Arrow: it makes Python objects of every row it is given (issue 22)
    keep = pc.is_in(table.column("split"), value_set=pa.array(list(_TRAINING_SPLITS), pa.string()))
    if validation_ids is not None:
        keep = pc.and_(keep, pc.is_in(table.column("id").cast(pa.string()),
                                      value_set=pa.array([str(i) for i in validation_ids], pa.string())))
    table = table.filter(keep)
    record = certificate.grid
    if grid_values is None and record.get("kind") == "fixed" and record.get("values"):
        grid_values = record["values"]
    grid = (ThresholdGrid(grid_values, kind="fixed") if grid_values is not None
            else fixed_grid(100, 0.5, 1.0))
    result = choose_confidence_table(table, certificate.alpha, certificate.delta,
                                     max(n_calibration, 1), candidates=candidates,
                                     validation_ids=validation_ids, tie_policy=certificate.tie_policy,
                                     source=score_path, grid=grid)
    rows = ("the fitted model's validation part of the training split" if validation_ids is not None
            else "the training split (no fitted model's validation part was given)")
    return result["choice"], f"{result['n_validation']} items of {rows}"
