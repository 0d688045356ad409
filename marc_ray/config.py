"""PipelineConfig: the one typed configuration of ``marc-ray run``, validated once, up front.

A YAML file has one section per concern, and each section is the typed configuration of the
stage that owns it, composed here rather than copied: ``data`` → ``datasets.prepare.DataConfig``,
``annotate`` → ``annotate.config.AnnotateConfig``, ``fit`` → ``fit.config.FitSection`` (its
``FitConfig`` and ``TuneOptions``), ``calibrate`` → ``calibrate.config.CalibrateConfig``, ``ray`` →
``ray_cluster.RayConfig``; ``report`` is the pipeline's own. Loading is strict, as nanoGPT's
configurator: an unknown key is an error that names the key and the allowed keys, and every
value is checked before anything starts (a missing model, a missing data file, alpha or delta
outside (0, 1), a confidence measure the pipeline will not produce). The resolved configuration is written into the run folder and
into every manifest and report.

Example (``configs/demo.yaml`` is the complete, commented version)::

    run_dir: runs/demo
    data:
      demo: {n_items: 240}          # the built-in benchmark (marc_ray.demo); or comparisons
                                    # (and optionally pool, columns, labels: datasets.user_data)
    annotate: {model: smollm2, mode: likelihood, n_annotators: 3, k_shots: 2}
    fit: {epochs: 10}
    calibrate: {alpha: 0.15, delta: 0.1, confidence: conf_marc}

A cascade lists more judges, cheapest first; each entry overrides fields of ``annotate``::

    cascade:
      - {judge_name: small, model: /models/small}
      - {judge_name: large, model: /models/large}
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field, fields
from typing import Any

from .annotate.config import AnnotateConfig, judge_name
from .annotate.engines import engine_spec
from .calibrate.config import AUTO, CONFIDENCE_MEASURES, GRIDS, LEARNED_MEASURES, CalibrateConfig
from .contracts import TIE_POLICIES
from .contracts.validation import check_safe_name, check_section_types, fail, reject_unknown
from .datasets.prepare import SPLITS, DataConfig
from .fit.config import FitSection, TuneOptions
from .ray_cluster import RayConfig
from .run_folder import RUN_CONFIG, RunFolder

__all__ = ["PipelineConfig", "DataConfig", "AnnotateConfig", "FitSection", "TuneOptions",
           "CalibrateConfig", "ReportConfig", "RayConfig", "judge_name", "read_run_config",
           "AUTO", "CONFIDENCE_MEASURES", "GRIDS", "LEARNED_MEASURES", "SPLITS"]

# annotate fields the pipeline sets itself (from `data` and `run_dir`)
PIPELINE_OWNED_ANNOTATE_KEYS = ("input", "pool", "output")


@dataclass
class ReportConfig:
    """What the report says about itself."""

    title: str = "marc_ray: certified selective judge"
    notes: list = field(default_factory=list)  # extra sentences shown at the top of the report

    def validate(self, source: str = "") -> "ReportConfig":
        check_section_types(self, "report", source)
        for note in self.notes:
            if not isinstance(note, str):
                fail("report.notes", "a list of strings (one sentence each)", note, source)
        return self


@dataclass
class PipelineConfig:
    """The whole job: one typed section per stage, checked once by :meth:`validate`.

    Build with :meth:`from_yaml` / :meth:`from_dict`. ``annotate`` is the judge (an
    ``AnnotateConfig`` without its paths, which the pipeline sets); ``cascade`` lists overrides of
    it, one per judge, cheapest first (see :meth:`judges`); ``fit`` is a ``FitSection`` (its
    switches and the ``FitConfig`` of the model).
    """

    run_dir: str = "runs/marc_ray"  # every stage writes under it; a rerun resumes from it
    seed: int = 0              # the run's seed: split, demo data, annotators and training derive from it
    data: DataConfig = field(default_factory=DataConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)  # the judge and its annotators
    cascade: list = field(default_factory=list)   # optional judges, cheapest first: annotate overrides
    fit: FitSection = field(default_factory=FitSection)  # FitConfig fields + the stage's switches
    calibrate: CalibrateConfig = field(default_factory=CalibrateConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    source: str = "<config>"   # the file it came from (not a YAML key)

    # -- loading ----------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "PipelineConfig":
        """Read and validate a YAML file."""
        from .contracts.yaml_file import load_yaml

        from .contracts.io import check_readable

        path = os.fspath(path)
        check_readable(path)  # a FIFO would block forever; a symlink loop is named as such
        try:
            with open(path, encoding="utf-8") as stream:
                data = load_yaml(stream.read(), path)
        except FileNotFoundError as error:
            raise ValueError(f"{path}: no such config file") from error
        except IsADirectoryError as error:
            raise ValueError(f"{path}: is a folder; CONFIG is a YAML file of settings") from error
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not UTF-8 text (byte {error.start})") from error
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a pipeline config must be a mapping of sections")
        return cls.from_dict(data, source=path)

    @classmethod
    def from_dict(cls, data: dict, source: str = "<config>",
                  folder: RunFolder | None = None) -> "PipelineConfig":
        """Build every section from a mapping and validate; unknown keys are errors naming the
        allowed ones. ``folder``: the run folder already built for ``run_dir``, if any."""
        top = [f.name for f in fields(cls) if f.name != "source"]
        reject_unknown(data, top, source, "")
        values: dict[str, Any] = {"source": source}
        for name in ("run_dir", "seed"):
            if name in data:
                values[name] = data[name]
        if not isinstance(values.get("run_dir", ""), str) or values.get("run_dir", "x") == "":
            fail("run_dir", "a folder path or URI", values.get("run_dir"), source)
        seed = values.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            fail("seed", "an integer", seed, source)
        sections = {name: dict(_mapping(data, name, source))
                    for name in ("data", "annotate", "fit", "calibrate", "report", "ray")}
        derive_seeds(sections, seed)
        for name, kind in (("data", DataConfig), ("calibrate", CalibrateConfig),
                           ("report", ReportConfig), ("ray", RayConfig)):
            reject_unknown(sections[name], [f.name for f in fields(kind)], source, name + ".")
            values[name] = kind(**sections[name])
        cascade = data.get("cascade") or []
        if not isinstance(cascade, list) or not all(isinstance(c, dict) for c in cascade):
            fail("cascade", "a list of mappings (annotate overrides per judge)", cascade, source)
        for where, mapping in [("annotate", sections["annotate"])] + [
                (f"cascade[{i}]", c) for i, c in enumerate(cascade)]:
            for key in PIPELINE_OWNED_ANNOTATE_KEYS:
                if key in mapping:
                    raise ValueError(f"{source}: {where}.{key} is set by the pipeline (from data "
                                     f"and run_dir); remove it")
            reject_unknown(mapping, [f.name for f in fields(AnnotateConfig)
                                     if f.name not in PIPELINE_OWNED_ANNOTATE_KEYS], source, where + ".")
        values["cascade"] = [dict(c) for c in cascade]
        values["annotate"] = AnnotateConfig.from_dict(sections["annotate"], source)
        tie_policy = values["calibrate"].tie_policy  # checked with its section, in validate
        try:
            values["fit"] = FitSection.from_dict(
                sections["fit"], tie_policy=tie_policy if tie_policy in TIE_POLICIES else "drop")
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: fit: {error}") from error
        config = cls(**values)
        if folder is not None:
            config._folder = folder  # the `folder` property checks it is run_dir's
        return config.validate()

    @property
    def folder(self) -> RunFolder:
        """The run folder's layout at ``run_dir``: built once, and passed to every stage."""
        folder = getattr(self, "_folder", None)
        if folder is None or folder.root != os.fspath(self.run_dir):
            folder = self._folder = RunFolder(self.run_dir)
        return folder

    # -- the judges ---------------------------------------------------------------------------

    def judges(self) -> list[AnnotateConfig]:
        """One ``AnnotateConfig`` per judge, cheapest first, with the pipeline's paths filled in.

        Resolved once, at validation (each cascade entry overrides ``annotate``); each call
        returns fresh copies, so a caller may repoint one (``apply_run`` does)."""
        if getattr(self, "_judges", None) is not None:
            return [copy.deepcopy(judge) for judge in self._judges]
        return self._resolve_judges()

    def _resolve_judges(self) -> list[AnnotateConfig]:
        base = {k: v for k, v in self.annotate.to_dict().items()
                if k not in PIPELINE_OWNED_ANNOTATE_KEYS}
        folder = self.folder
        out = []
        for index, override in enumerate(self.cascade or [{}]):
            config = AnnotateConfig.from_dict({**base, **override}, self.source)
            name = judge_name(config)
            # the name becomes annotate/<name>, fit/<name>, score/<name>.parquet: check it first
            check_safe_name(("annotate" if not self.cascade else f"cascade[{index}]") + ".judge_name",
                            name, self.source)
            config.input, config.pool = folder.comparisons, folder.pool
            config.output = folder.annotations(name)
            # the column calibrate.by names rides in every annotation row, so it reaches the scores
            config.carry = tuple(dict.fromkeys((*config.carry, *self.calibrate.carry)))
            out.append(config)
        return out

    # -- validation -------------------------------------------------------------------------

    def validate(self) -> "PipelineConfig":
        """Check every section once, then what spans sections; raise ``ValueError`` naming the
        key, what is allowed and the fix."""
        src = self.source
        self._judges = None  # resolved again below
        self.data.validate(src)
        self.report.validate(src)
        self.ray.validate(src)
        judges = self._validate_judges()
        self._resolve_pool_size(judges)
        if "train" not in self.fit.model.train_splits:
            raise ValueError(f"{src}: fit.train_splits must include 'train' (the pipeline names its "
                             f"training split 'train'), got {list(self.fit.model.train_splits)}")
        self.calibrate.validate(src, len(judges))
        cal = self.calibrate
        learned = set(LEARNED_MEASURES) & ({cal.confidence} | set(cal.compare))
        if learned and not self.fit.enabled:
            raise ValueError(f"{src}: calibrate uses {sorted(learned)} but fit.enabled is false; "
                             f"enable fit or use conf_simulated / conf_predictive")
        produced = f"conf_{self.fit.model.variant}"
        if cal.confidence in LEARNED_MEASURES and cal.confidence != produced:  # (auto: never)
            raise ValueError(f"{src}: calibrate.confidence is {cal.confidence!r} but fit.variant "
                             f"{self.fit.model.variant!r} writes {produced!r}; make them agree")
        self._judges = judges  # resolved once (cascade entries over annotate); judges() copies them
        return self

    def _resolve_pool_size(self, judges: list[AnnotateConfig]) -> None:
        """Without ``data.pool``, the pool drawn from the train split is what the judges need:
        ``n_annotators * k_shots`` non-tie items (the largest over judges; none for replay)."""
        if self.data.demo is None and not self.data.pool and not self.data.pool_size:
            self.data.pool_size = max((judge.n_annotators * judge.k_shots for judge in judges
                                       if engine_spec(judge.engine).needs_pool), default=0)

    def _validate_judges(self) -> list[AnnotateConfig]:
        from .annotate.models import MODEL_ALIASES, check_model_spec

        judges = self._resolve_judges()
        names = set()
        for index, judge in enumerate(judges):
            where = "annotate" if not self.cascade else f"cascade[{index}]"
            try:
                judge.validate()
            except ValueError as error:
                raise ValueError(f"{self.source}: {where}: {error}") from error
            spec = engine_spec(judge.engine)
            # e.g. credentials in an http base_url, a replay run table that is not there:
            # refused before anything runs
            for option, check in spec.option_checks.items():
                try:
                    check(judge.engine_options)
                except ValueError as error:
                    raise ValueError(f"{self.source}: {where}.engine_options.{option}: "
                                     f"{error}") from error
            # A local run checks the model here; on a cluster the paths name the cluster's
            # storage, and the annotate job checks them there before any engine starts.
            local = not (self.ray.address or os.environ.get("RAY_ADDRESS"))
            if spec.loads_model and (local or judge.model in MODEL_ALIASES):
                try:
                    check_model_spec(judge.model)
                except ValueError as error:
                    raise ValueError(f"{self.source}: {where}.model: {error}") from error
            name = judge_name(judge)
            if name in names:
                raise ValueError(f"{self.source}: two judges are named {name!r}; give each cascade "
                                 f"entry its own judge_name")
            names.add(name)
        return judges

    # -- recording --------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The resolved configuration (what the run folder and the report record); reading it
        back with :meth:`from_dict` gives the same configuration."""
        out = {"run_dir": self.run_dir, "seed": self.seed, "data": dataclasses.asdict(self.data),
               "annotate": {k: v for k, v in self.annotate.to_dict().items()
                            if k not in PIPELINE_OWNED_ANNOTATE_KEYS},
               "cascade": copy.deepcopy(self.cascade), "fit": self.fit.to_dict()}
        for name in ("calibrate", "report", "ray"):
            out[name] = dataclasses.asdict(getattr(self, name))
        return out

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike | RunFolder) -> "PipelineConfig":
        """The configuration a run folder was made with, pointed at the folder's own data.

        The saved config may name data files that have since moved, or another ``run_dir``
        (the folder itself may have moved); the run's copies in ``run_dir/data`` are what its
        annotators and splits were built from, so they are what is used. The returned config's
        :attr:`folder` is ``run_dir`` (the same object when a ``RunFolder`` is passed).
        """
        folder = RunFolder.of(run_dir)
        data = read_run_config(folder)
        data["run_dir"] = folder.root
        data["data"] = {key: value for key, value in (data.get("data") or {}).items()
                        if key not in ("demo", "comparisons", "pool", "max_items", "columns",
                                       "labels", "pool_size")}
        data["data"]["comparisons"], data["data"]["pool"] = folder.comparisons, folder.pool
        return cls.from_dict(data, source=folder.config, folder=folder)

    def replace(self, **changes: Any) -> "PipelineConfig":
        """A copy with top-level fields changed (validated again)."""
        data = self.to_dict()
        data.update(changes)
        return PipelineConfig.from_dict(data, self.source)


def read_run_config(run_dir: str | os.PathLike | RunFolder) -> dict:
    """The resolved configuration ``marc-ray run`` wrote into a run folder, as a mapping.

    Raises
    ------
    ContractError
        ``run_dir`` is not a run folder.
    """
    from .contracts import ContractError
    from .contracts.io import is_file, read_text
    from .contracts.yaml_file import load_yaml

    folder = RunFolder.of(run_dir)
    path = folder.config
    if not is_file(path):
        raise ContractError(folder.root, f"not a marc_ray run folder (no {RUN_CONFIG})",
                            hint="pass the run folder `marc-ray run` wrote (its run_dir or --out)")
    return load_yaml(read_text(path), os.fspath(path)) or {}


# Every seed of a run is the top-level `seed` unless its section sets its own (docs/pipeline.md,
# "Seeds"): one number reproduces the whole run, and one part can still be varied alone.
# (The demo's data, `data.demo.seed`, and the certificate's drift sample follow the same rule
# where they are drawn: datasets.prepare and the calibrate stage take the run's seed.)
SECTION_SEEDS = (("data", "split_seed"),     # the train / calibration / test split, the drawn pool
                 ("annotate", "seed"),       # the simulated annotators and their examples
                 ("fit", "random_state"))    # C_theta's weights, pair sampling, validation split


def derive_seeds(sections: dict[str, dict], seed: int) -> None:
    """Set each of :data:`SECTION_SEEDS` a section leaves out to the run's ``seed`` (in place)."""
    for section, key in SECTION_SEEDS:
        sections[section].setdefault(key, seed)


def _mapping(data: dict, name: str, source: str) -> dict:
    """A section of the YAML file: a mapping (absent or null: empty)."""
    section = data.get(name)
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ValueError(f"{source}: section '{name}' must be a mapping, got {section!r}")
    return section
