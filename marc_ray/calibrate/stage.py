"""The pipeline's calibrate stage: a certificate from the scored files of a run's judges.

One threshold per judge on the calibration split (a cascade when there are several judges, a
threshold per group with ``by``), bound to what it certifies (each scores file's judge, model
and confidence model), with a sample of the calibration confidences for later drift checks.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from ..contracts import ContractError, file_hash, metadata_binding, read_table
from ..contracts.io import absolute, join, read_text
from ..contracts.provenance import provenance_from_metadata
from .config import CONFIDENCE_MEASURES, AUTO, CalibrateConfig

CALIBRATION_SAMPLE = 10_000  # calibration confidences stored in the certificate for drift checks
AUTO_ROLE = "confidence: auto: rows it read"  # the provenance role of the measure's choice


def calibrate_stage(settings: CalibrateConfig, names: list[str], score_paths: list[str],
                    out_path: str, *, model_folders: list[str | None], seed: int = 0,
                    run_dir: str = "", learned_measure: str | None = None) -> dict:
    """Certify a threshold per judge on the calibration split; write the certificate.

    Parameters
    ----------
    settings : CalibrateConfig (validated)
    names, score_paths : the judges, cheapest first, and their scored files
    out_path : where the certificate goes
    model_folders : per judge, its fitted model folder (None: a heuristic confidence)
    seed : seeds the sample of calibration confidences kept for drift checks
    run_dir : recorded in the certificate (where the run lives)
    learned_measure : the fit stage's column (``conf_marc``), a candidate of ``confidence: auto``

    Returns
    -------
    dict : λ̂, coverage and the counts (calibration items, ties dropped, used), for the
        stage's progress line
    """
    from ..contracts.align import aligned_sets
    from ..contracts.model_folder import MODEL_FILE
    from .certify import Stage, certify
    from .grid import fixed_grid, quantile_grid

    cal = settings
    confidence_choice = None
    confidence = cal.confidence
    if confidence == AUTO:
        confidence_choice = choose_run_confidence(cal, score_paths[0], model_folders[0],
                                                  learned_measure)
        confidence = confidence_choice["choice"]
    sets = aligned_sets(score_paths, names, confidence, cal.by or "group")
    calibration, train = sets["calibration"], sets.get("train")
    # An item a judge gave no verdict on stays in: that judge never accepts it, exactly as apply
    # routes it (on to the next judge, or to humans), so each stage is calibrated on the items
    # it will see. Dropping such items would calibrate on a different population.
    conf, pred = calibration.confidence, calibration.pred
    has_verdict = np.isin(pred, ["a", "b"]) & np.isfinite(conf)
    if not has_verdict.any():
        raise ContractError(out_path, "no calibration item has a verdict and a confidence from "
                            "any judge", hint="check the annotate stage's run statuses")
    pred = np.where(has_verdict, pred, None)
    labels, ids = calibration.human_label, np.asarray(calibration.ids, dtype=object)
    if cal.grid == "quantile":
        if train is None or not np.isfinite(train.confidence[:, 0]).any():
            raise ContractError(out_path, "a quantile grid needs scored training items",
                                hint="use calibrate.grid: fixed, or give the data a train split")
        values = train.confidence[:, 0]
        finite = np.isfinite(values)
        grid = quantile_grid(values[finite], cal.n_grid, ids=np.asarray(train.ids, dtype=object)[finite])
    else:
        grid = fixed_grid(cal.n_grid, cal.grid_low, cal.grid_high)
    model_hash = ";".join(file_hash(join(folder, MODEL_FILE)) for folder in model_folders
                          if folder is not None) or None
    columns = {"id": pa.array(ids.tolist(), pa.string()),
               "human_label": pa.array(labels.tolist(), pa.string())}
    for l, name in enumerate(names):
        columns[f"pred:{name}"] = pa.array(pred[:, l].tolist(), pa.string())
        columns[f"conf:{name}"] = pa.array(conf[:, l])
    extra = {**_calibration_sample(conf, has_verdict, names, seed),
             "model_folders": {name: f for name, f in zip(names, model_folders)},
             "run_dir": absolute(run_dir) if run_dir else ""}
    if confidence_choice is not None:
        extra["confidence_choice"] = confidence_choice
    if cal.costs is not None:  # the report's cost-coverage frontier reads them from here
        extra["costs"] = {name: float(cost) for name, cost in zip(names, cal.costs)}
    provenance = ({AUTO_ROLE: confidence_choice.pop("rows_read")}
                  if confidence_choice is not None else {})
    if cal.by is not None:
        groups = calibration.groups
        missing = (np.arange(len(ids)) if groups is None
                   else np.flatnonzero(np.equal(groups, None)))
        if missing.size:
            raise ContractError(score_paths[0], f"calibrate.by is {cal.by!r} but calibration item "
                                f"{ids[missing[0]]!r} has no {cal.by}", field=cal.by,
                                hint="give every comparison a group, or remove calibrate.by")
    design = None
    if cal.design:  # grid, start and the cascade's shape chosen on the train split only
        if train is None or not len(train.ids):
            raise ContractError(out_path, "calibrate.design needs scored training items",
                                hint="give the data a train split, or set calibrate.design: false")
        design = {"train": design_rows(train), **design_options(cal, len(names))}
    # the one certify path (calibrate.certify): provenance, grid check, binding, digest
    bindings = stage_bindings(score_paths, names, confidence)
    certified = certify([Stage(name, confidence, conf[:, l], pred[:, l], bindings[l],
                               scores_provenance(score_paths[l], confidence))
                         for l, name in enumerate(names)], labels, ids,
                        alpha=cal.alpha, delta=cal.delta, grid=grid, procedure=cal.procedure,
                        min_n=cal.min_n, tie_policy=cal.tie_policy, delta_split=cal.delta_split,
                        groups=None if cal.by is None else calibration.groups, by=cal.by,
                        provenance=provenance, exclude_seen=cal.exclude_seen,
                        exclude_flag="calibrate.exclude_seen: true", hashed=pa.table(columns),
                        model_hash=model_hash, extra=extra, source=score_paths[0], design=design)
    certificate = certified.certificates[cal.alpha]
    if certified.n_excluded:  # the drift reference is the rows calibrated on, not those left out
        kept = certified.kept
        certificate.extra.update(_calibration_sample(conf[kept], has_verdict[kept], names, seed))
    certificate.write(out_path)
    return _progress(certified, certificate)


def _progress(certified, certificate) -> dict:
    """The stage's progress line, the same for every kind: λ̂ per stage (per group: "g: λ̂ ..."),
    coverage and every count named."""
    from .decide import thresholds_by_group

    per_group = thresholds_by_group(certificate)
    lambda_hat = "; ".join((f"{g}: " if certificate.groups else "")
                           + " ".join(f"{t:.4g}" for t in thresholds)
                           for g, thresholds in per_group.items())
    return {"lambda_hat": lambda_hat, "coverage": round(certificate.coverage, 4),
            "n_calibration": certified.n_calibration, "n_ties_dropped": certified.n_ties_dropped,
            "n_used": certified.n_used,
            **({"groups": len(per_group)} if certificate.groups else {}),
            **({"excluded (seen by provenance)": certified.n_excluded}
               if certified.n_excluded else {})}


def design_options(settings: CalibrateConfig, n_judges: int) -> dict:
    """``calibrate.design``'s options for a run's judges (``certify``'s ``design`` less its
    rows; the plan predicts with the same). Every judge stays a stage, in the order given: the
    run's apply routes its judges in that order; a judge the train split says certifies little
    gets a small share of delta instead."""
    return {"costs": settings.costs, "drop": False, "order": "given",
            "delta_split": settings.design_delta_split if n_judges > 1 else "equal",
            "probability": settings.design_pass_probability}


def design_rows(train) -> dict:
    """The train split's items as ``calibrate.design`` reads them (an aligned ``ItemSet``)."""
    rows = {"confidence": train.confidence, "pred": train.pred, "human_label": train.human_label,
            "ids": np.asarray(train.ids, dtype=object)}
    if train.groups is not None:
        rows["groups"] = np.asarray(train.groups, dtype=object)
    return rows


def _calibration_sample(conf: np.ndarray, has_verdict: np.ndarray, names: list[str], seed: int
                        ) -> dict:
    """The certificate's drift reference: a seeded sample of each judge's calibration
    confidences (items with a verdict), and how many items had no verdict."""
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.permutation(len(conf))[:CALIBRATION_SAMPLE])
    return {"calibration_confidence": {name: np.round(conf[keep, l][has_verdict[keep, l]], 6).tolist()
                                       for l, name in enumerate(names)},
            "n_without_verdict": {name: int((~has_verdict[:, l]).sum())
                                  for l, name in enumerate(names)}}


def choose_run_confidence(settings: CalibrateConfig, score_path: str, model_folder: str | None,
                          learned_measure: str | None) -> dict:
    """``calibrate.confidence: auto``: the measure to certify, chosen on training data only.

    The candidates are the two heuristics and the learned measure the fit stage wrote; the
    choice (``calibrate.select.choose_confidence_table``) reads only training-split rows, and
    of those only the fitted model's validation part (``MarcConfidence.valid_ids_``, the items
    it was not trained on) when there is a model. Calibration items are never read.
    """
    from ..contracts.model_folder import CONFIG_FILE
    from .grid import fixed_grid
    from .select import choose_confidence_table

    cal = settings
    table = read_table(score_path)
    candidates = [c for c in ("conf_predictive", "conf_simulated", learned_measure)
                  if c is not None and c in CONFIDENCE_MEASURES and c in table.column_names]
    validation_ids = None
    if model_folder is not None:
        validation_ids = json.loads(read_text(join(model_folder, CONFIG_FILE))).get("valid_ids") or None
    splits = table.column("split").to_pylist()
    result = choose_confidence_table(table, cal.alpha, cal.delta, max(splits.count("calibration"), 1),
                                     candidates=candidates, validation_ids=validation_ids,
                                     tie_policy=cal.tie_policy, source=score_path,
                                     grid=fixed_grid(cal.n_grid, cal.grid_low, cal.grid_high))
    result["validation"] = ("the fitted model's validation part of the training split"
                            if validation_ids is not None else "the training split")
    return json.loads(json.dumps(result, default=float))


def scores_provenance(path: str, confidence: str) -> dict:
    """The provenance a scored file carries for ``confidence`` (``fit.score``: the rows its
    model was trained and validated on); empty for a heuristic column."""
    import pyarrow.parquet as pq

    return provenance_from_metadata(pq.read_schema(path).metadata, confidence)


def stage_bindings(score_paths: list[str], names: list[str], confidence: str) -> list[dict]:
    """What each stage certifies, read from its scores file's metadata (``contracts.with_binding``)."""
    import pyarrow.parquet as pq

    return [metadata_binding(pq.read_schema(path).metadata, confidence, judge=name) | {"judge": name}
            for path, name in zip(score_paths, names)]
