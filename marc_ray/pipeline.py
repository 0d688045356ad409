"""``run_pipeline(config)``: prepare → annotate → fit (or tune) → score → calibrate → report.

Every stage reads files and writes files under ``config.run_dir``, each folder with a
manifest recording the stage's settings, the hashes of its inputs and of its outputs; the
folder's layout is :class:`marc_ray.run_folder.RunFolder`'s (config.yaml, manifests/, data/,
annotate/<judge>/, fit/<judge>/, score/<judge>.parquet, calibrate/certificate.json, report/).

A rerun skips a stage whose manifest matches (same settings, same input hashes, outputs still
there), so an interrupted run resumes where it stopped, and changing, say, ``calibrate.alpha``
recomputes only calibrate and report. Ray is started only when a stage needs it: an embedded
local cluster by default, ``ray.address`` / ``--address`` / ``$RAY_ADDRESS`` for an existing one.

``run_dir`` is any location ``contracts.io`` takes (a local folder, a shared mount, an object
store URI such as ``s3://bucket/runs/x``): manifests, hashes and every stage's files go through
it. On a cluster of several nodes a node-local ``run_dir`` is refused before anything runs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Callable

from .annotate.stage import annotate_stage, judge_input_files
from .calibrate.stage import calibrate_stage
from .config import PipelineConfig, judge_name
from .contracts import (Certificate, ContractError, file_hash, write_json_atomic,
                        write_text_atomic)
from .contracts.io import (check_location, check_readable, exists, is_dir, is_uri, join, list_names, make_dirs,
                           read_text, resolve)
from .contracts.redact import redact, redact_text
from .datasets.prepare import prepare
from .fit.stage import fit_stage, score_stage
from .run_folder import RunFolder

STAGES = ("prepare", "annotate", "fit", "score", "calibrate", "report")


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

def _hash_key(path: str) -> str:
    """How a manifest names a file: relative to the working folder, or the URI itself."""
    return path if is_uri(path) else os.path.relpath(path)


def _hash_paths(paths: list[str]) -> dict[str, str]:
    """SHA-256 of every file under the given files or folders (temporaries skipped); any location."""
    out = {}
    for path in paths:
        if is_dir(path):
            for name in list_names(path, recursive=True):
                if not name.rsplit("/", 1)[-1].startswith((".tmp", "_tmp")):
                    full = join(path, *name.split("/"))
                    out[_hash_key(full)] = file_hash(full)
        elif exists(path):
            out[_hash_key(path)] = file_hash(path)
        else:
            out[_hash_key(path)] = "missing"
    return out


def _stage_is_current(path: str, settings: dict, inputs: dict, outputs: list[str]) -> bool:
    if not exists(path):
        return False
    try:
        manifest = json.loads(read_text(path))
    except (OSError, json.JSONDecodeError):
        return False
    if manifest.get("settings") != json.loads(json.dumps(redact(settings), default=str)):
        return False
    if manifest.get("inputs") != inputs:
        return False
    if not all(exists(p) for p in outputs):
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


# ---------------------------------------------------------------------------------------------
# The whole job
# ---------------------------------------------------------------------------------------------

def prepare_data(config: PipelineConfig) -> dict:
    """The prepare stage on ``config``'s data, into its run folder's data/ (``datasets.prepare``)."""
    folder = RunFolder(config.run_dir)
    return prepare(config.data, seed=config.seed, comparisons_out=folder.comparisons,
                   pool_out=folder.pool, extra_splits=config.fit.model.valid_splits,
                   group_column=config.calibrate.by)


def check_storage(config: PipelineConfig) -> None:
    """Before anything runs: no credentials in ``run_dir``; on a cluster of several nodes, a
    ``run_dir`` and Ray Train / Tune checkpoints every node reads (``storage.require_shared``
    says what to use instead).

    The cluster is joined here only when the run is on one (``ray.address`` / $RAY_ADDRESS,
    or Ray already connected); an embedded local cluster is one node.
    """
    from .storage import cluster_nodes, require_shared

    check_location(config.run_dir)
    connected = "ray" in sys.modules and sys.modules["ray"].is_initialized()  # no import for replay
    if not (connected or config.ray.address or os.environ.get("RAY_ADDRESS")):
        return
    config.ray.join()
    locations = {"run_dir": config.run_dir}
    default = "~/ray_results"  # where Ray Train and Tune write when given no storage_path
    if config.fit.enabled and config.fit.model.backend == "ray":
        locations["fit.storage_path"] = config.fit.model.storage_path or default
    if config.fit.enabled and config.fit.tune:
        locations["fit.tune_options.storage_path"] = config.fit.tune_options.storage_path or default
    require_shared(locations, cluster_nodes())


def check_inputs(config: PipelineConfig) -> None:
    """Before anything runs (the plan included): the data files are files, not a FIFO that
    would block forever nor a symlink loop (``contracts.io.check_readable``)."""
    if config.data.demo is None:
        for path in (config.data.comparisons, config.data.pool):
            if path:
                check_readable(path)


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

    A run refused for its input (a ``ContractError`` or ``ValueError``: a bad label, a duplicate
    id, an unreadable data file) leaves nothing behind: what this invocation created under the
    run folder is removed (only its empty folders once a stage has finished); what an earlier
    run left is never touched.
    """
    check_inputs(config)
    check_storage(config)
    before = _entries(config.run_dir)  # what earlier runs left: never removed
    existed = exists(config.run_dir)
    ran: list[str] = []
    try:
        return _run_stages(config, command, stream, ran)
    except (ContractError, ValueError):  # refused input: leave nothing this invocation made
        _remove_new_entries(config.run_dir, before, existed, everything=not ran)
        raise


def _entries(run_dir: str) -> set[str]:
    """Every file and folder under ``run_dir`` (full paths of its filesystem); empty if absent."""
    from pyarrow import fs

    filesystem, path = resolve(run_dir)
    if filesystem.get_file_info(path).type != fs.FileType.Directory:
        return set()
    return {info.path for info in filesystem.get_file_info(fs.FileSelector(path, recursive=True))}


def _remove_new_entries(run_dir: str, before: set[str], existed: bool, everything: bool) -> None:
    """After a refusal: remove what this invocation created under ``run_dir`` (all of it when
    no stage finished, else only its empty folders, e.g. an ``annotate/<judge>/`` never
    written); what was there before is kept. Best effort: a cleanup never hides the refusal."""
    from pyarrow import fs

    filesystem, root = resolve(run_dir)
    try:
        new = sorted(_entries(run_dir) - before, key=lambda p: p.count("/"), reverse=True)
        for path in new:  # deepest first, so a folder is empty when its turn comes
            info = filesystem.get_file_info(path)
            if info.type == fs.FileType.File and everything:
                filesystem.delete_file(path)
            elif info.type == fs.FileType.Directory and (
                    everything or not filesystem.get_file_info(fs.FileSelector(path))):
                filesystem.delete_dir(path)
        if not existed and not filesystem.get_file_info(fs.FileSelector(root)):
            filesystem.delete_dir(root)
    except OSError:
        pass


def _run_stages(config: PipelineConfig, command: str | None, stream, ran: list[str]) -> dict:
    """The stages of :func:`run_pipeline`, appending each stage that ran to ``ran``."""
    from .report.stage import report_stage

    run_dir = config.run_dir
    folder = RunFolder(run_dir)
    make_dirs(run_dir)
    write_text_atomic(run_config_text(config), folder.config)
    progress = Progress(stream)
    judges = config.judges()
    names = [judge_name(j) for j in judges]

    # [1] prepare: the comparisons and the pool, validated and split, as Parquet in data/
    data_outputs = [folder.comparisons, folder.pool]
    data_inputs = [] if config.data.demo is not None else [config.data.comparisons, config.data.pool]
    prepare_settings = config.to_dict()["data"] | {"seed": config.seed}
    if config.calibrate.by is not None:  # the column is kept and checked on calibration rows
        prepare_settings["by"] = config.calibrate.by
    if run_stage(progress, 1, "prepare", run_dir, prepare_settings,
                 data_inputs, data_outputs, lambda: prepare_data(config)):
        ran.append("prepare")

    # [2] annotate: every judge's simulated annotators (Ray Data over engine actors)
    for judge, name in zip(judges, names):
        settings = {k: v for k, v in judge.to_dict().items() if k not in ("progress",)}
        if run_stage(progress, 2, "annotate", run_dir, settings,
                     data_outputs + judge_input_files(judge), [judge.output],
                     lambda judge=judge: annotate_stage(judge, config.ray), label=name):
            ran.append(f"annotate:{name}")

    # [3] fit: each judge's confidence model on its training split (local or Ray Train / Tune)
    learned = config.fit.enabled
    model_folders: list[str | None] = []
    for judge, name in zip(judges, names):
        model_folder = folder.model_folder(name)
        model_folders.append(model_folder if learned else None)
        if not learned:
            continue
        settings = {"fit": config.fit.model.to_dict(), "tune": config.fit.tune,
                    "tune_options": config.fit.tune_options.to_dict()}
        if run_stage(progress, 3, "fit", run_dir, settings, [judge.output], folder.model_files(name),
                     lambda judge=judge, model_folder=model_folder:
                     fit_stage(config.fit, judge.output, model_folder, config.ray), label=name):
            ran.append(f"fit:{name}")
    if not learned:
        progress.line(3, "fit", "disabled", "calibrating a heuristic confidence")

    # [4] score: annotations + the learned confidence column
    score_paths = []
    for judge, name, model_folder in zip(judges, names, model_folders):
        path = folder.scores(name)
        score_paths.append(path)
        inputs = [judge.output] + ([folder.model_weights(name)] if model_folder else [])
        if run_stage(progress, 4, "score", run_dir, {"model": model_folder},
                     inputs, [path], lambda judge=judge, model_folder=model_folder, path=path:
                     score_stage(judge.output, model_folder, path), label=name):
            ran.append(f"score:{name}")

    # [5] calibrate: the certificate, on the calibration split
    certificate_path = folder.certificate
    calibrate_settings = config.to_dict()["calibrate"] | {"seed": config.seed, "judges": names}
    if run_stage(progress, 5, "calibrate", run_dir, calibrate_settings,
                 score_paths, [certificate_path],
                 lambda: calibrate_stage(config.calibrate, names, score_paths, certificate_path,
                                         model_folders=model_folders, seed=config.seed,
                                         run_dir=run_dir, learned_measure=config.fit.measure)):
        ran.append("calibrate")

    # [6] report: what the certificate does on calibration and test items, formatted
    report_settings = config.to_dict()["report"] | {"compare": config.calibrate.compare}
    report_paths: dict = {}

    def report() -> dict:
        report_paths.update(report_stage(run_dir, command=command))
        return {"coverage": round(Certificate.read(certificate_path).coverage, 4)}

    if run_stage(progress, 6, "report", run_dir, report_settings,
                 [certificate_path] + score_paths, [folder.report_html], report):
        ran.append("report")
    return {"run_dir": run_dir, "certificate": certificate_path,
            "report": folder.report_html, "ran": ran,
            "wall_s": round(time.perf_counter() - progress.started, 2)}
