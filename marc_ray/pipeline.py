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
from dataclasses import dataclass
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


@dataclass
class Stage:
    """One stage as the pipeline runs it, declared once: every setting it reads, every file it
    reads and every file it writes.

    Its manifest key is derived from this declaration alone (the settings, redacted, and the
    hash of every input): a rerun skips the stage when the key is unchanged and its outputs are
    the ones it recorded. What a stage reads but does not declare could change without the stage
    running again, so each declaration (:func:`declare_stages`) lists all of it.
    """

    index: int                          # its place in STAGES, from 1 (the progress line)
    name: str                           # one of STAGES
    settings: dict                      # every setting it reads
    inputs: list[str]                   # every file or folder it reads (hashed)
    outputs: list[str]                  # what it writes (hashed when it finishes)
    compute: Callable[[], dict | None]  # runs it; returns the counts of its progress line
    label: str = ""                     # the judge, for a stage run once per judge


def run_stage(progress: Progress, folder: RunFolder, stage: Stage) -> bool:
    """Run ``stage`` unless its manifest says its outputs are current; True if it ran.

    The manifest is ``RunFolder.manifest(stage, label)`` (kept apart from the outputs, so that
    a folder of Parquet shards holds nothing else).
    """
    name = stage.name + (f" {stage.label}" if stage.label else "")
    manifest = folder.manifest(stage.name, stage.label)
    input_hashes = _hash_paths(stage.inputs)
    if _stage_is_current(manifest, stage.settings, input_hashes, stage.outputs):
        progress.line(stage.index, name, "skipped", "outputs up to date")
        return False
    progress.line(stage.index, name, "running")
    started = time.perf_counter()
    details = stage.compute() or {}
    wall = time.perf_counter() - started
    _write_manifest(manifest, stage.name, stage.settings, input_hashes, stage.outputs, wall, details)
    summary = ", ".join(f"{k} {v}" for k, v in details.items() if isinstance(v, (int, float, str)))
    progress.line(stage.index, name, "done", f"{wall:.1f} s" + (f"; {summary}" if summary else ""))
    return True


# ---------------------------------------------------------------------------------------------
# The whole job
# ---------------------------------------------------------------------------------------------

def prepare_data(config: PipelineConfig) -> dict:
    """The prepare stage on ``config``'s data, into its run folder's data/ (``datasets.prepare``)."""
    folder = config.folder
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


def declare_stages(config: PipelineConfig, command: str | None = None) -> list[Stage]:
    """Every stage of the run, in order, each with what it reads and writes (:class:`Stage`).

    ``command`` (recorded in the report) is not part of the report's key: rerunning the same
    configuration with another spelling of the command line reuses the report.
    """
    from .report.stage import report_stage

    folder, seed = config.folder, config.seed
    judges = config.judges()
    names = [judge_name(j) for j in judges]
    sections = config.to_dict()
    learned = config.fit.enabled
    data = [folder.comparisons, folder.pool]
    models = {name: folder.model_files(name) if learned else [] for name in names}
    stages = []

    # [1] prepare: the comparisons and the pool, validated and split, as Parquet in data/
    settings = sections["data"] | {"seed": seed, "valid_splits": list(config.fit.model.valid_splits)}
    if config.calibrate.by is not None:  # the column is kept and checked on calibration rows
        settings["by"] = config.calibrate.by
    stages.append(Stage(1, "prepare", settings,
                        [] if config.data.demo is not None else [config.data.comparisons, config.data.pool],
                        data, lambda: prepare_data(config)))

    # [2] annotate: every judge's simulated annotators (Ray Data over engine actors)
    for judge, name in zip(judges, names):
        stages.append(Stage(2, "annotate", {k: v for k, v in judge.to_dict().items() if k != "progress"},
                            data + judge_input_files(judge), [judge.output],
                            lambda judge=judge: annotate_stage(judge, config.ray), name))

    # [3] fit: each judge's confidence model on its training split (local or Ray Train / Tune)
    for judge, name in zip(judges, names) if learned else ():
        stages.append(Stage(3, "fit", {"fit": config.fit.model.to_dict(), "tune": config.fit.tune,
                                       "tune_options": config.fit.tune_options.to_dict()},
                            [judge.output], models[name],
                            lambda judge=judge, name=name: fit_stage(
                                config.fit, judge.output, folder.model_folder(name), config.ray), name))

    # [4] score: annotations + the learned confidence column
    for judge, name in zip(judges, names):
        model_folder = folder.model_folder(name) if learned else None
        stages.append(Stage(4, "score", {"model": model_folder}, [judge.output] + models[name],
                            [folder.scores(name)],
                            lambda judge=judge, model_folder=model_folder, name=name:
                            score_stage(judge.output, model_folder, folder.scores(name)), name))

    # [5] calibrate: the certificate, on the calibration split
    scores = [folder.scores(name) for name in names]
    model_folders = [folder.model_folder(name) if learned else None for name in names]
    # (the fitted models: their hash goes into the certificate, their validation ids are left
    # out of the calibration rows; run_dir, recorded as where the run lives, is not a setting:
    # a moved folder resumes without a new certificate)
    model_files = [path for name in names for path in models[name]]
    stages.append(Stage(5, "calibrate", sections["calibrate"] | {"seed": seed, "judges": names},
                        scores + model_files, [folder.certificate],
                        lambda: calibrate_stage(config.calibrate, names, scores, folder.certificate,
                                                model_folders=model_folders, seed=seed,
                                                run_dir=config.run_dir,
                                                learned_measure=config.fit.measure)))

    # [6] report: what the certificate does on calibration and test items, formatted
    def report() -> dict:
        report_stage(config.run_dir, command=command)
        return {"coverage": round(Certificate.read(folder.certificate).coverage, 4)}

    # (it shows the whole configuration, config.yaml, and the hashes of the data and models)
    stages.append(Stage(6, "report", sections["report"] | {"compare": config.calibrate.compare},
                        [folder.certificate] + scores + [folder.config] + data + model_files,
                        [folder.report_html], report))
    return stages


def _run_stages(config: PipelineConfig, command: str | None, stream, ran: list[str]) -> dict:
    """The stages of :func:`run_pipeline`, appending each stage that ran to ``ran``."""
    folder = config.folder
    make_dirs(config.run_dir)
    write_text_atomic(run_config_text(config), folder.config)
    progress = Progress(stream)
    said_fit_disabled = False
    for stage in declare_stages(config, command):
        if stage.name == "score" and not config.fit.enabled and not said_fit_disabled:
            progress.line(3, "fit", "disabled", "calibrating a heuristic confidence")
            said_fit_disabled = True
        if run_stage(progress, folder, stage):
            ran.append(stage.name + (f":{stage.label}" if stage.label else ""))
    return {"run_dir": config.run_dir, "certificate": folder.certificate,
            "report": folder.report_html, "ran": ran,
            "wall_s": round(time.perf_counter() - progress.started, 2)}
