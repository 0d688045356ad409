"""``run_pipeline(config)``: prepare → annotate → fit (or tune) → score → calibrate → report.

Every stage reads files and writes files under ``config.run_dir``, each folder with a
manifest recording the stage's settings, the hashes of its inputs and of its outputs; the
folder's layout is :class:`marc_ray.run_folder.RunFolder`'s (config.yaml, manifests/, data/,
annotate/<judge>/, fit/<judge>/, score/<judge>.parquet, calibrate/certificate.json, report/).

A rerun skips a stage whose manifest matches (same settings, same input hashes, outputs still
there), so an interrupted run resumes where it stopped, and changing, say, ``calibrate.alpha``
recomputes only calibrate and report. Ray is started only when a stage needs it: an embedded
local cluster by default, ``ray.address`` / ``--address`` / ``$RAY_ADDRESS`` for an existing one.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Callable

import numpy as np
import pyarrow as pa

from .config import PipelineConfig, judge_name
from .contracts import (Certificate, ContractError, check_pool_disjoint, file_hash, metadata_binding,
                        read_columns, read_table, table_hash, validate_comparisons,
                        with_binding, write_json_atomic, write_table_atomic, write_text_atomic)
from .contracts.redact import redact, redact_text
from .run_folder import RunFolder

STAGES = ("prepare", "annotate", "fit", "score", "calibrate", "report")
CALIBRATION_SAMPLE = 10_000  # calibration confidences stored in the certificate for drift checks


class Progress:
    """One line per stage on stderr: what runs, what is skipped, how long each took."""

    def __init__(self, stream=None, total: int = len(STAGES)):
        self.stream = stream or sys.stderr
        self.total = total
        self.started = time.perf_counter()

    def line(self, index: int, stage: str, status: str, detail: str = "") -> None:
        elapsed = time.perf_counter() - self.started
        detail = redact_text(detail)  # a log line never carries a credentialed URL
        print(f"[{index}/{self.total}] {stage:<9} {status:<9} {detail}  (t = {elapsed:.1f} s)",
              file=self.stream, flush=True)


# ---------------------------------------------------------------------------------------------
# Manifests and resume
# ---------------------------------------------------------------------------------------------

def _hash_paths(paths: list[str]) -> dict[str, str]:
    """SHA-256 of every file under the given files or folders (manifests and temporaries skipped)."""
    out = {}
    for path in paths:
        if os.path.isdir(path):
            for root, _, names in os.walk(path):
                for name in sorted(names):
                    if name.startswith((".tmp", "_tmp")):
                        continue
                    full = os.path.join(root, name)
                    out[os.path.relpath(full)] = file_hash(full)
        elif os.path.exists(path):
            out[os.path.relpath(path)] = file_hash(path)
        else:
            out[os.path.relpath(path)] = "missing"
    return out


def _stage_is_current(path: str, settings: dict, inputs: dict, outputs: list[str]) -> bool:
    if not os.path.exists(path):
        return False
    try:
        with open(path, encoding="utf-8") as stream:
            manifest = json.load(stream)
    except (OSError, json.JSONDecodeError):
        return False
    if manifest.get("settings") != json.loads(json.dumps(redact(settings), default=str)):
        return False
    if manifest.get("inputs") != inputs:
        return False
    if not all(os.path.exists(p) for p in outputs):
        return False
    return manifest.get("outputs") == _hash_paths(outputs)


def _write_manifest(path: str, stage: str, settings: dict, inputs: dict, outputs: list[str],
                    wall_s: float, details: dict | None = None) -> None:
    write_json_atomic({"stage": stage, "settings": json.loads(json.dumps(redact(settings), default=str)),
                       "inputs": inputs, "outputs": _hash_paths(outputs), "wall_s": round(wall_s, 3),
                       "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "details": details or {}}, path)


def run_stage(progress: Progress, index: int, stage: str, run_dir: str, settings: dict,
              inputs: list[str], outputs: list[str], compute: Callable[[], dict | None],
              label: str = "") -> bool:
    """Run ``compute`` unless the stage's manifest says its outputs are current; True if it ran.

    The manifest is ``RunFolder.manifest(stage, label)`` (kept apart from the outputs, so that
    a folder of Parquet shards holds nothing else).
    """
    name = stage + (f" {label}" if label else "")
    manifest = RunFolder(run_dir).manifest(stage, label)
    input_hashes = _hash_paths(inputs)
    if _stage_is_current(manifest, settings, input_hashes, outputs):
        progress.line(index, name, "skipped", "outputs up to date")
        return False
    progress.line(index, name, "running")
    started = time.perf_counter()
    details = compute() or {}
    wall = time.perf_counter() - started
    _write_manifest(manifest, stage, settings, input_hashes, outputs, wall, details)
    summary = ", ".join(f"{k} {v}" for k, v in details.items() if isinstance(v, (int, float, str)))
    progress.line(index, name, "done", f"{wall:.1f} s" + (f"; {summary}" if summary else ""))
    return True


def ensure_ray(config: PipelineConfig) -> None:
    """The run's cluster (``ray_cluster.ensure_ray`` with the ``ray:`` section)."""
    from .ray_cluster import ensure_ray as join

    join(config.ray.address, config.ray.num_cpus)


# ---------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------

def assign_splits(table: pa.Table, config: PipelineConfig, source: str) -> pa.Table:
    """Keep a complete ``split`` column, else draw train/calibration/test by group (or item)."""
    splits = table.column("split").to_pylist()
    if all(s is not None for s in splits):
        allowed = {"train", "calibration", "test"} | set(config.fit_config().valid_splits)
        for row, value in enumerate(splits):
            if value not in allowed:
                raise ContractError(source, f"split {value!r} is not one of {sorted(allowed)}",
                                    row=row, field="split", hint="or remove the column to let "
                                    "the pipeline draw the split from data.*_fraction")
        if "calibration" not in splits:
            raise ContractError(source, "no row is in the 'calibration' split", field="split")
        return table
    data = config.data
    ids = table.column("id").to_pylist()
    groups = table.column("group").to_pylist()
    keys = [f"group:{g}" if g is not None else f"id:{i}" for g, i in zip(groups, ids)]
    unique = sorted(set(keys))
    order = np.random.default_rng(data.split_seed).permutation(len(unique))
    n_train = int(round(data.train_fraction * len(unique)))
    n_cal = int(round(data.calibration_fraction * len(unique)))
    names = {}
    for rank, position in enumerate(order):
        names[unique[position]] = ("train" if rank < n_train else
                                   "calibration" if rank < n_train + n_cal else "test")
    column = pa.array([names[k] for k in keys], pa.string())
    return table.set_column(table.column_names.index("split"), "split", column)


def prepare_data(config: PipelineConfig) -> dict:
    """Validate the comparisons and the pool (or generate the demo), assign splits, write Parquet."""
    folder = RunFolder(config.run_dir).data_dir
    if config.data.demo is not None:
        from .demo import DemoSpec, write_demo

        spec = dict(config.data.demo)
        spec.setdefault("seed", config.seed)
        if "votes_per_item" in spec:
            spec["votes_per_item"] = tuple(spec["votes_per_item"])
        comparisons_path, pool_path = write_demo(folder, DemoSpec(**spec))
    else:
        comparisons_path, pool_path = config.data.comparisons, config.data.pool
    comparisons = read_table(comparisons_path)
    if config.data.max_items:
        comparisons = comparisons.slice(0, config.data.max_items)
    comparisons = validate_comparisons(comparisons, comparisons_path, require_labels=True)
    pool = validate_comparisons(read_table(pool_path), pool_path, pool=True)
    check_pool_disjoint(pool, comparisons, pool_path, comparisons_path)
    comparisons = assign_splits(comparisons, config, comparisons_path)
    write_table_atomic(comparisons, RunFolder(config.run_dir).comparisons)
    write_table_atomic(pool, RunFolder(config.run_dir).pool)
    counts = {s: comparisons.column("split").to_pylist().count(s) for s in ("train", "calibration", "test")}
    return {"comparisons": comparisons.num_rows, "pool": pool.num_rows, **counts}


def annotate_judge(config: PipelineConfig, judge) -> dict:
    """Run the annotate job for one judge (it resumes finished shards by itself)."""
    from .annotate.job import annotate

    if judge.engine != "replay":  # replay reads verdicts; it needs no cluster
        ensure_ray(config)
    summary = annotate(judge)
    return {"items": summary.n_items, "shards written": len(summary.shards_written),
            "shards resumed": len(summary.shards_skipped)}


def judge_input_files(judge) -> list[str]:
    """Files a judge reads besides the data: a replay judge's run table.

    Its verdicts *are* that file, so the annotate stage must rerun when the file changes, not
    only when its path does (model folders are named by path and not hashed: they are large).
    """
    runs = judge.engine_options.get("runs") if judge.engine == "replay" else None
    return [runs] if isinstance(runs, str) and "://" not in runs else []


def fit_judge(config: PipelineConfig, judge, folder: str) -> dict:
    """Fit (or tune, then fit) the confidence model on the training split; save it to ``folder``."""
    from .fit import MarcConfidence

    fit_config = config.fit_config()
    if fit_config.backend == "ray":
        ensure_ray(config)
    # a path: fit reads the scalar columns, then only the training rows' runs (fit.data.prepare)
    annotations = judge.output
    details = {}
    if config.fit_settings.tune:
        from .fit import tune_margin

        ensure_ray(config)
        annotations = read_table(judge.output)
        outcome = tune_margin(annotations, fit_config, refit=True, **config.fit_settings.tune_options)
        model = outcome.model or MarcConfidence(outcome.best_config).fit(annotations, source=judge.output)
        details["tuned trials"] = len(outcome.trials)
    else:
        model = MarcConfidence(fit_config).fit(annotations, source=judge.output)
    model.save(folder)
    if getattr(model, "n_without_verdict_", 0):
        details["left out (no verdict)"] = model.n_without_verdict_
    return {"n_train": model.n_train_, "n_valid": model.n_valid_, "gamma": round(model.gamma_, 4),
            **details}


def score_judge(judge, model_folder: str | None, out_path: str) -> dict:
    """Annotations + the learned confidence column (``fit.score.score_annotations``)."""
    from .fit.score import score_annotations

    table = score_annotations([model_folder] if model_folder is not None else [], judge.output,
                              out_path)
    return {"rows": table.num_rows}


def calibrate_run(config: PipelineConfig, judges: list, score_paths: list[str], out_path: str,
                  model_folders: list[str | None]) -> dict:
    """Certify a threshold per judge on the calibration split (a cascade when several judges)."""
    from .calibrate.calibrator import SelectiveCalibrator
    from .calibrate.cascade import CascadeCalibrator
    from .calibrate.grid import fixed_grid, quantile_grid
    from .contracts.align import aligned_sets

    cal = config.calibrate
    names = [judge_name(j) for j in judges]
    confidence_choice = None
    confidence = cal.confidence
    if confidence == "auto":
        confidence_choice = choose_run_confidence(config, score_paths[0], model_folders[0])
        confidence = confidence_choice["choice"]
    sets = aligned_sets(score_paths, names, confidence)
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
    folder = RunFolder(config.run_dir)
    model_hash = ";".join(file_hash(folder.model_weights(name)) for name, f in zip(names, model_folders)
                          if f is not None) or None
    columns = {"id": pa.array(ids.tolist(), pa.string()),
               "human_label": pa.array(labels.tolist(), pa.string())}
    for l, name in enumerate(names):
        columns[f"pred:{name}"] = pa.array(pred[:, l].tolist(), pa.string())
        columns[f"conf:{name}"] = pa.array(conf[:, l])
    data_hash = table_hash(pa.table(columns))
    rng = np.random.default_rng(config.seed)
    keep = np.sort(rng.permutation(len(conf))[:CALIBRATION_SAMPLE])
    extra = {"calibration_confidence": {name: np.round(conf[keep, l][has_verdict[keep, l]], 6).tolist()
                                        for l, name in enumerate(names)},
             "n_without_verdict": {name: int((~has_verdict[:, l]).sum()) for l, name in enumerate(names)},
             "model_folders": {name: f for name, f in zip(names, model_folders)},
             "run_dir": os.path.abspath(config.run_dir)}
    if confidence_choice is not None:
        extra["confidence_choice"] = confidence_choice
    settings = dict(alpha=cal.alpha, delta=cal.delta, grid=grid, procedure=cal.procedure,
                    min_n=cal.min_n, tie_policy=cal.tie_policy)
    if cal.by is not None:
        from .calibrate.groups import GroupedCalibrator

        groups = calibration.groups
        missing = (np.arange(len(ids)) if groups is None
                   else np.flatnonzero(np.equal(groups, None)))
        if missing.size:
            raise ContractError(score_paths[0], f"calibrate.by is {cal.by!r} but calibration item "
                                f"{ids[missing[0]]!r} has no {cal.by}", field=cal.by,
                                hint="give every comparison a group, or remove calibrate.by")
        # delta is split across groups (union bound), then each group's share across its stages
        calibrator = GroupedCalibrator(stage_split=cal.delta_split, **settings)
        calibrator.calibrate_cascade([(name, conf[:, l], pred[:, l]) for l, name in enumerate(names)],
                                     labels, groups.astype(str))
        certificate = calibrator.certificate(data_hash, cal.by, [confidence] * len(names),
                                             model_hash, extra=extra)
        certificate.write(out_path)
        record = certificate.groups["values"]
        return {"lambda_hat": "; ".join(f"{g}: " + " ".join(f"{s['threshold']:.4g}" for s in v["stages"])
                                        for g, v in record.items()),
                "coverage": round(certificate.coverage, 4), "n_calibration": certificate.n_calibration,
                "groups": len(record)}
    if len(judges) == 1:
        calibrator = SelectiveCalibrator(**settings).calibrate(conf[:, 0], pred[:, 0], labels, ids=ids)
        certificate = calibrator.certificate(data_hash, confidence, model_hash, names[0], extra=extra)
    else:
        calibrator = CascadeCalibrator(delta_split=cal.delta_split, **settings)
        calibrator.calibrate([(name, conf[:, l], pred[:, l]) for l, name in enumerate(names)],
                             labels, ids=ids)
        certificate = calibrator.certificate(data_hash, [confidence] * len(names), model_hash,
                                             extra=extra)
    certificate = with_binding(certificate, stage_bindings(score_paths, names, confidence))
    certificate.write(out_path)
    thresholds = [float(s["threshold"]) for s in certificate.stages]
    return {"lambda_hat": " ".join(f"{t:.4g}" for t in thresholds),
            "coverage": round(certificate.coverage, 4), "n_calibration": certificate.n_calibration}


def choose_run_confidence(config: PipelineConfig, score_path: str, model_folder: str | None) -> dict:
    """``calibrate.confidence: auto``: the measure to certify, chosen on training data only.

    The candidates are the two heuristics and the learned measure the fit stage wrote; the
    choice (``calibrate.select.choose_confidence_table``) reads only training-split rows, and
    of those only the fitted model's validation part (``MarcConfidence.valid_ids_``, the items
    it was not trained on) when there is a model. Calibration items are never read.
    """
    from .calibrate.grid import fixed_grid
    from .calibrate.select import choose_confidence_table
    from .config import CONFIDENCE_MEASURES
    from .fit.estimator import CONFIG_FILE

    cal = config.calibrate
    table = read_table(score_path)
    learned = f"conf_{config.fit.get('variant', 'marc')}" if config.fit_settings.enabled else None
    candidates = [c for c in ("conf_predictive", "conf_simulated", learned)
                  if c is not None and c in CONFIDENCE_MEASURES and c in table.column_names]
    validation_ids = None
    if model_folder is not None:
        with open(os.path.join(model_folder, CONFIG_FILE), encoding="utf-8") as stream:
            validation_ids = json.load(stream).get("valid_ids") or None
    splits = table.column("split").to_pylist()
    result = choose_confidence_table(table, cal.alpha, cal.delta, max(splits.count("calibration"), 1),
                                     candidates=candidates, validation_ids=validation_ids,
                                     tie_policy=cal.tie_policy, source=score_path,
                                     grid=fixed_grid(cal.n_grid, cal.grid_low, cal.grid_high))
    result["validation"] = ("the fitted model's validation part of the training split"
                            if validation_ids is not None else "the training split")
    return json.loads(json.dumps(result, default=float))


def stage_bindings(score_paths: list[str], names: list[str], confidence: str) -> list[dict]:
    """What each stage certifies, read from its scores file's metadata (``contracts.with_binding``)."""
    import pyarrow.parquet as pq

    return [metadata_binding(pq.read_schema(path).metadata, confidence, judge=name) | {"judge": name}
            for path, name in zip(score_paths, names)]


def evaluate_run(items) -> dict:
    """The calibrate layer's numbers on a finished run, for its report.

    Parameters
    ----------
    items : marc_ray.report.collect.RunItems (or a run folder path)

    Returns
    -------
    dict
        ``evaluation`` (``calibrate.evaluation.evaluate_certificate`` on the calibration and test
        splits), ``measures`` (``compare_certified_measures`` on the first judge's scores),
        ``groups`` (``evaluate_groups``; None without per-group thresholds), ``escalations``
        (``escalation_examples`` on the test split, else the calibration split) and ``fit``
        (per judge: γ per epoch of its fitted model, from the model's ``config.json``).
    """
    from .calibrate.evaluation import (compare_certified_measures, escalation_examples,
                                       evaluate_certificate, evaluate_groups)
    from .report.collect import drift_significance, run_items

    if isinstance(items, (str, os.PathLike)):
        items = run_items(os.fspath(items))
    certificate = items.certificate
    confidence = certificate.stages[0]["confidence"]
    compare = (items.config.get("calibrate") or {}).get("compare") or [confidence]
    evaluation = evaluate_certificate(certificate, items.sets["calibration"], items.sets.get("test"),
                                      drift_significance(items.config))
    # one read: the scalar columns, and probs for the escalated items' run summaries
    scores = read_columns(items.score_paths[0], also=["probs"])
    measures = compare_certified_measures(scores, compare, certificate)
    deployment = items.sets.get("test")
    runs = scores.select(["id", "probs"]) if "probs" in scores.column_names else None
    escalations = escalation_examples(certificate, deployment or items.sets["calibration"], runs)
    return {"evaluation": evaluation, "measures": measures,
            "groups": evaluate_groups(certificate, items.sets["calibration"], deployment),
            "escalations": escalations, "fit": fitted_margins(certificate)}


def fitted_margins(certificate: Certificate) -> dict:
    """Per judge with a fitted model: γ per epoch and the final γ (the model's config.json)."""
    out = {}
    for name, folder in ((certificate.extra or {}).get("model_folders") or {}).items():
        path = os.path.join(folder, "config.json") if folder else None
        if path is None or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as stream:
            model = json.load(stream)
        history = model.get("gamma_history") or [h.get("gamma") for h in model.get("history", [])]
        out[name] = {"gamma_history": [float(g) for g in history if g is not None],
                     "gamma": model.get("gamma"),
                     "agreement_map": "agreement_map" in model}
    return out


# ---------------------------------------------------------------------------------------------
# The whole job
# ---------------------------------------------------------------------------------------------

def run_config_text(config: PipelineConfig) -> str:
    """The run folder's config.yaml: the resolved configuration with every secret redacted.

    A run folder is shared (and ``apply_run`` re-reads this file), so a secret must come from
    the environment (the http engine's ``api_key_env`` names a variable), never from the file.
    """
    import yaml

    return yaml.safe_dump(redact(config.to_dict()), sort_keys=False)


def run_pipeline(config: PipelineConfig, *, command: str | None = None, stream=None) -> dict:
    """Run every stage that is not already up to date; return the paths of the report.

    Parameters
    ----------
    config : PipelineConfig
        Validated (``PipelineConfig.from_yaml`` validates).
    command : str, optional
        The command line to record in the report ("how to reproduce").
    stream : file, optional
        Where the progress lines go (stderr).

    Returns
    -------
    dict
        ``run_dir``, ``certificate``, ``report`` (paths) and ``ran`` (the stages that ran).
    """
    from .report.collect import build_report, run_items

    run_dir = config.run_dir
    folder = RunFolder(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    write_text_atomic(run_config_text(config), folder.config)
    progress = Progress(stream)
    judges = config.judges()
    names = [judge_name(j) for j in judges]
    ran = []
    data_outputs = [folder.comparisons, folder.pool]
    data_inputs = [] if config.data.demo is not None else [config.data.comparisons, config.data.pool]
    if run_stage(progress, 1, "prepare", run_dir, config.to_dict()["data"] | {"seed": config.seed},
                 data_inputs, data_outputs, lambda: prepare_data(config)):
        ran.append("prepare")

    for judge, name in zip(judges, names):
        settings = {k: v for k, v in judge.to_dict().items() if k not in ("progress",)}
        if run_stage(progress, 2, "annotate", run_dir, settings,
                     data_outputs + judge_input_files(judge), [judge.output],
                     lambda judge=judge: annotate_judge(config, judge), label=name):
            ran.append(f"annotate:{name}")

    learned = config.fit_settings.enabled
    model_folders: list[str | None] = []
    for judge, name in zip(judges, names):
        model_folder = folder.model_folder(name)
        model_folders.append(model_folder if learned else None)
        if not learned:
            continue
        settings = {"fit": config.fit_config().to_dict(), "tune": config.fit_settings.tune,
                    "tune_options": config.fit_settings.tune_options}
        if run_stage(progress, 3, "fit", run_dir, settings, [judge.output], folder.model_files(name),
                     lambda judge=judge, model_folder=model_folder: fit_judge(config, judge, model_folder),
                     label=name):
            ran.append(f"fit:{name}")
    if not learned:
        progress.line(3, "fit", "disabled", "calibrating a heuristic confidence")

    score_paths = []
    for judge, name, model_folder in zip(judges, names, model_folders):
        path = folder.scores(name)
        score_paths.append(path)
        inputs = [judge.output] + ([folder.model_weights(name)] if model_folder else [])
        if run_stage(progress, 4, "score", run_dir, {"model": model_folder},
                     inputs, [path], lambda judge=judge, model_folder=model_folder, path=path:
                     score_judge(judge, model_folder, path), label=name):
            ran.append(f"score:{name}")

    certificate_path = folder.certificate
    calibrate_settings = config.to_dict()["calibrate"] | {"seed": config.seed, "judges": names}
    if run_stage(progress, 5, "calibrate", run_dir, calibrate_settings,
                 score_paths, [certificate_path],
                 lambda: calibrate_run(config, judges, score_paths, certificate_path, model_folders)):
        ran.append("calibrate")

    report_settings = config.to_dict()["report"] | {"compare": config.calibrate.compare}
    report_paths: dict = {}

    def report() -> dict:
        items = run_items(run_dir)
        report_paths.update(build_report(run_dir, evaluate_run(items), command=command, items=items))
        certificate = Certificate.read(certificate_path)
        return {"coverage": round(certificate.coverage, 4)}

    if run_stage(progress, 6, "report", run_dir, report_settings,
                 [certificate_path] + score_paths, [folder.report_html], report):
        ran.append("report")
    return {"run_dir": run_dir, "certificate": certificate_path,
            "report": folder.report_html, "ran": ran,
            "wall_s": round(time.perf_counter() - progress.started, 2)}
