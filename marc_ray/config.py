"""PipelineConfig: the one typed configuration of ``marc-ray run``, validated once, up front.

A YAML file has one section per concern; every key of every section is a field below (or of
the stage's own config class, ``AnnotateConfig`` and ``FitConfig``, which this composes rather
than copies). Loading is strict, as nanoGPT's configurator: an unknown key is an error that
names the key and the allowed keys, and every value is checked before anything starts (a
missing model, a missing data file, alpha or delta outside (0, 1), a confidence measure the
pipeline will not produce). The resolved configuration is written into the run folder and
into every manifest and report.

Example (``configs/demo.yaml`` is the complete, commented version)::

    run_dir: runs/demo
    data:
      demo: {n_items: 240}          # the built-in benchmark (marc_ray.demo); or comparisons/pool
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
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

from .contracts import TIE_POLICIES
from .contracts.validation import check_choice, check_number, check_safe_name, fail, reject_unknown
from .run_folder import RUN_CONFIG, RunFolder

# Confidence measures the pipeline can calibrate on: the two heuristics every annotation row
# carries, and the learned models the fit stage writes (``MarcConfidence.column``).
CONFIDENCE_MEASURES: dict[str, str] = {
    "conf_predictive": "predictive probability: zero-shot, both orders averaged (baseline)",
    "conf_simulated": "simulated annotators (Jung et al. 2025): mean over annotators and orders",
    "conf_marc": "MARC: learned C_theta with the adaptive margin (needs the fit stage)",
    "conf_vanilla": "vanilla learned: the same network with a fixed margin (fit.variant: vanilla)",
}
LEARNED_MEASURES = ("conf_marc", "conf_vanilla")
GRIDS: dict[str, str] = {
    "fixed": "evenly spaced thresholds between grid_low and grid_high, fixed in advance",
    "quantile": "quantiles of the training split's scores (disjoint from calibration)",
}
SPLITS = ("train", "calibration", "test")
# columns calibrate.by may name: comparison columns that reach the scored rows
# (contracts.CARRIED_COLUMNS); put any other grouping (a subset, a prompt, a language) in `group`
GROUP_COLUMNS: dict[str, str] = {"group": "the comparisons' group column (a task, a subset, a dataset)"}
AUTO = "auto"
# keywords of fit.tune.tune_margin a config may set (fit.tune_options); a test keeps them in step
TUNE_OPTIONS = ("search_space", "num_samples", "select", "trainer", "grace_period",
                "max_concurrent_trials", "storage_path", "name")
# annotate fields the pipeline sets itself (from `data` and `run_dir`)
PIPELINE_OWNED_ANNOTATE_KEYS = ("input", "pool", "output")


@dataclass
class DataConfig:
    """Where the comparisons come from and how they are split."""

    comparisons: str = ""      # comparisons (JSONL/JSON/Parquet, local path or pyarrow URI); "" with demo
    pool: str = ""             # few-shot pool with annotator ids (never calibrated or tested on)
    demo: dict | None = None   # generate the built-in benchmark instead: marc_ray.demo.DemoSpec fields
                               # ({} = defaults); writes run_dir/data/{comparisons,pool}.jsonl
    train_fraction: float = 0.4        # used when the comparisons have no `split` column: share of
    calibration_fraction: float = 0.4  # groups (or items) for fitting C_theta, for calibration,
    test_fraction: float = 0.2         # and held out for evaluation and the drift check; sum to 1
    split_seed: int = 0        # seeds the split (the same seed gives the same split)
    max_items: int = 0         # 0 = all; else the first max_items comparisons (quick trials)


@dataclass
class FitSettings:
    """Pipeline-level switches of the fit stage; the other keys of ``fit:`` go to FitConfig."""

    enabled: bool = True       # false: no learned confidence (calibrate a heuristic instead)
    tune: bool = False         # true: sweep margin / learning rate / width with Ray Tune first
    tune_options: dict = field(default_factory=dict)  # passed to the fit stage's tune function


@dataclass
class CalibrateConfig:
    """Calibration settings (``marc_ray.calibrate``): the guarantee's α and δ and how λ̂ is found."""

    alpha: float = 0.1         # tolerated disagreement among decided items: agreement >= 1 - alpha
                               # (the default of SelectiveCalibrator and `marc-ray calibrate` too)
    delta: float = 0.1         # the guarantee holds with probability >= 1 - delta (calibration draw)
    procedure: str = "fixed_sequence"  # "fixed_sequence" | "bonferroni" | "holm"
    grid: str = "fixed"        # one of GRIDS; never thresholds read off the calibration scores
    n_grid: int = 200          # thresholds in the grid (fixed-sequence pays nothing for more)
    grid_low: float = 0.0      # fixed grid range; heuristic confidences live in [0.5, 1]
    grid_high: float = 1.0
    min_n: Any = "auto"        # skip thresholds accepting fewer items; "auto" = the fewest that can pass
    tie_policy: str = "drop"   # "drop" | "disagree" (contracts.TIE_POLICIES)
    confidence: str = "conf_marc"  # the measure certified (one of CONFIDENCE_MEASURES, or "auto":
                               # chosen on the training split's validation part, calibrate/select.py)
    compare: list = field(default_factory=lambda: ["conf_predictive", "conf_simulated", "conf_marc"])
                               # measures compared (AUROC, ranking risk) on the test split
    delta_split: Any = "equal"  # cascades: "equal" (delta / L per judge) or a list of L weights
    drift_significance: float = 0.01  # the drift warning fires when the KS test's p < this
    by: str | None = None      # a threshold per value of this column (one of GROUP_COLUMNS),
                               # delta split across groups by the union bound (calibrate/groups.py)


@dataclass
class ReportConfig:
    """What the report says about itself."""

    title: str = "marc_ray: certified selective judge"
    notes: list = field(default_factory=list)  # extra sentences shown at the top of the report


@dataclass
class RayConfig:
    """Where the job runs."""

    address: str | None = None  # None: $RAY_ADDRESS if set, else an embedded local cluster
    num_cpus: int | None = None  # local cluster only: CPUs it may use (None: all)


@dataclass
class PipelineConfig:
    """The whole job: every knob of every stage, checked once by :meth:`validate`.

    Build with :meth:`from_yaml` / :meth:`from_dict`; stage configs are
    ``marc_ray.annotate.config.AnnotateConfig`` (one per judge, see :meth:`judges`) and
    ``marc_ray.fit.config.FitConfig`` (see :meth:`fit_config`).
    """

    run_dir: str = "runs/marc_ray"  # every stage writes under it; a rerun resumes from it
    seed: int = 0              # the run's seed: split, demo data, annotators and training derive from it
    data: DataConfig = field(default_factory=DataConfig)
    annotate: dict = field(default_factory=dict)  # AnnotateConfig fields (the judge, its annotators)
    cascade: list = field(default_factory=list)   # optional judges, cheapest first: annotate overrides
    fit: dict = field(default_factory=dict)       # FitConfig fields + FitSettings switches
    calibrate: CalibrateConfig = field(default_factory=CalibrateConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    source: str = "<config>"   # the file it came from (not a YAML key)

    # -- loading ----------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "PipelineConfig":
        """Read and validate a YAML file."""
        import yaml

        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as stream:
                data = yaml.safe_load(stream)
        except FileNotFoundError as error:
            raise ValueError(f"{path}: no such config file") from error
        except IsADirectoryError as error:
            raise ValueError(f"{path}: is a folder; CONFIG is a YAML file of settings") from error
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not UTF-8 text (byte {error.start})") from error
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML: {error}") from error
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a pipeline config must be a mapping of sections")
        return cls.from_dict(data, source=path)

    @classmethod
    def from_dict(cls, data: dict, source: str = "<config>") -> "PipelineConfig":
        """Build from a mapping and validate; unknown keys are errors naming the allowed ones."""
        top = [f.name for f in fields(cls) if f.name != "source"]
        reject_unknown(data, top, source, "")
        values: dict[str, Any] = {"source": source}
        for name in ("run_dir", "seed", "annotate", "cascade", "fit"):
            if name in data:
                values[name] = data[name]
        for name, kind in (("data", DataConfig), ("calibrate", CalibrateConfig),
                           ("report", ReportConfig), ("ray", RayConfig)):
            section = data.get(name) or {}
            if not isinstance(section, dict):
                raise ValueError(f"{source}: section '{name}' must be a mapping, got {section!r}")
            reject_unknown(section, [f.name for f in fields(kind)], source, name + ".")
            values[name] = kind(**section)
        config = cls(**values)
        if config.annotate is None:
            config.annotate = {}
        if config.fit is None:
            config.fit = {}
        if config.cascade is None:
            config.cascade = []
        return config.validate()

    # -- composed stage configs -------------------------------------------------------------

    @property
    def fit_settings(self) -> FitSettings:
        """The fit stage's switches (resolved once, at validation)."""
        if getattr(self, "_fit_settings", None) is not None:
            return self._fit_settings
        names = [f.name for f in fields(FitSettings)]
        return FitSettings(**{k: v for k, v in self.fit.items() if k in names})

    def fit_config(self):
        """The ``FitConfig`` of the fit stage (seeded from ``seed`` unless given); resolved once,
        at validation (a FitConfig is frozen, so it is shared)."""
        if getattr(self, "_fit_config", None) is not None:
            return self._fit_config
        from .fit.config import FitConfig

        names = [f.name for f in fields(FitSettings)]
        values = {k: v for k, v in self.fit.items() if k not in names}
        values.setdefault("random_state", self.seed)
        values.setdefault("tie_policy", self.calibrate.tie_policy)
        return FitConfig.from_dict(values)

    def judges(self) -> list:
        """One ``AnnotateConfig`` per judge, cheapest first, with the pipeline's paths filled in.

        Resolved once, at validation (each cascade entry overrides ``annotate``); each call
        returns fresh copies, so a caller may repoint one (``apply_run`` does)."""
        if getattr(self, "_judges", None) is not None:
            return [copy.deepcopy(judge) for judge in self._judges]
        return self._resolve_judges()

    def _resolve_judges(self) -> list:
        from .annotate.config import AnnotateConfig

        entries = self.cascade or [{}]
        folder = RunFolder(self.run_dir)
        out = []
        for index, override in enumerate(entries):
            values = dict(self.annotate)
            values.update(override)
            values.setdefault("seed", self.seed)
            config = AnnotateConfig.from_dict(values, self.source)
            name = judge_name(config)
            # the name becomes annotate/<name>, fit/<name>, score/<name>.parquet: check it first
            check_safe_name(("annotate" if not self.cascade else f"cascade[{index}]") + ".judge_name",
                            name, self.source)
            config.input, config.pool = folder.comparisons, folder.pool
            config.output = folder.annotations(name)
            out.append(config)
        return out

    # -- validation -------------------------------------------------------------------------

    def validate(self) -> "PipelineConfig":
        """Check every value once; raise ``ValueError`` naming the key, what is allowed and the fix."""
        src = self.source
        self._judges = self._fit_settings = self._fit_config = None  # resolved again below
        for name, section in (("data", self.data), ("calibrate", self.calibrate),
                              ("report", self.report), ("ray", self.ray)):
            check_section_types(section, name, src)
        if not isinstance(self.run_dir, str) or not self.run_dir:
            raise ValueError(f"{src}: run_dir must be a folder path, got {self.run_dir!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"{src}: seed must be an integer, got {self.seed!r}")
        self._validate_data()
        for name in ("annotate", "fit"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{src}: section '{name}' must be a mapping")
        if not isinstance(self.cascade, list) or not all(isinstance(c, dict) for c in self.cascade):
            raise ValueError(f"{src}: cascade must be a list of mappings (annotate overrides per judge)")
        for key in PIPELINE_OWNED_ANNOTATE_KEYS:
            for where, mapping in [("annotate", self.annotate)] + [
                    (f"cascade[{i}]", c) for i, c in enumerate(self.cascade)]:
                if key in mapping:
                    raise ValueError(f"{src}: {where}.{key} is set by the pipeline (from data and "
                                     f"run_dir); remove it")
        if not all(isinstance(note, str) for note in self.report.notes):
            bad = next(n for n in self.report.notes if not isinstance(n, str))
            fail("report.notes", "a list of strings (one sentence each)", bad, src)
        judges = self._validate_judges()
        self._validate_fit()
        self._validate_calibrate(len(judges))
        self._judges = judges  # resolved once (cascade entries over annotate); judges() copies them
        self._fit_settings, self._fit_config = self.fit_settings, self.fit_config()
        if self.ray.address is not None and not isinstance(self.ray.address, str):
            raise ValueError(f"{src}: ray.address must be a string such as 'auto' or "
                             f"'ray://host:10001', got {self.ray.address!r}")
        return self

    def _validate_data(self) -> None:
        src, data = self.source, self.data
        if data.demo is not None:
            from .demo import DemoSpec

            if not isinstance(data.demo, dict):
                raise ValueError(f"{src}: data.demo must be a mapping of DemoSpec fields ({{}} for "
                                 f"the defaults), got {data.demo!r}")
            reject_unknown(data.demo, [f.name for f in fields(DemoSpec)], src, "data.demo.")
            if data.comparisons or data.pool:
                raise ValueError(f"{src}: give either data.demo or data.comparisons/data.pool, not both")
        else:
            for name in ("comparisons", "pool"):
                value = getattr(data, name)
                if not value:
                    raise ValueError(f"{src}: data.{name} is required (a file path or URI), or set "
                                     f"data.demo: {{}} to generate the built-in benchmark")
                if "://" not in value and not os.path.exists(value):
                    raise ValueError(f"{src}: data.{name}: no such file {value!r}")
        fractions = (data.train_fraction, data.calibration_fraction, data.test_fraction)
        if any(not isinstance(f, (int, float)) or f < 0 for f in fractions) or \
                not math.isclose(sum(fractions), 1.0, abs_tol=1e-6) or data.calibration_fraction <= 0:
            raise ValueError(f"{src}: data.train_fraction, calibration_fraction and test_fraction must "
                             f"be >= 0 and sum to 1, with calibration_fraction > 0; got {fractions}")
        if not isinstance(data.max_items, int) or data.max_items < 0:
            raise ValueError(f"{src}: data.max_items must be an integer >= 0, got {data.max_items!r}")

    def _validate_judges(self) -> list:
        from .annotate.models import MODEL_ALIASES, check_model_spec

        judges = self.judges()
        names = set()
        for index, judge in enumerate(judges):
            where = "annotate" if not self.cascade else f"cascade[{index}]"
            try:
                judge.validate()
            except ValueError as error:
                raise ValueError(f"{self.source}: {where}: {error}") from error
            # A local run checks the model here; on a cluster the paths name the cluster's
            # storage, and the annotate job checks them there before any engine starts.
            local = not (self.ray.address or os.environ.get("RAY_ADDRESS"))
            if judge.engine in ("transformers", "vllm") and (local or judge.model in MODEL_ALIASES):
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

    def _validate_fit(self) -> None:
        settings_names = [f.name for f in fields(FitSettings)]
        from .fit.config import FitConfig

        allowed = settings_names + [f.name for f in fields(FitConfig)]
        reject_unknown(self.fit, allowed, self.source, "fit.")
        check_section_types(self.fit_settings, "fit", self.source)
        reject_unknown(self.fit_settings.tune_options, TUNE_OPTIONS, self.source, "fit.tune_options.")
        try:
            config = self.fit_config()
        except (TypeError, ValueError) as error:
            raise ValueError(f"{self.source}: fit: {error}") from error
        if "train" not in config.train_splits:
            raise ValueError(f"{self.source}: fit.train_splits must include 'train' (the pipeline "
                             f"names its training split 'train'), got {list(config.train_splits)}")

    def _validate_calibrate(self, n_judges: int) -> None:
        from .calibrate.testing import PROCEDURES

        src, cal = self.source, self.calibrate
        for name in ("alpha", "delta"):
            value = getattr(cal, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                example = "0.15: at least 85% agreement" if name == "alpha" else "0.1: 90% confidence"
                raise ValueError(f"{src}: calibrate.{name} must be a number in (0, 1) (e.g. "
                                 f"{example}), got {value!r}")
        check_choice("calibrate.procedure", cal.procedure, PROCEDURES, src)
        check_choice("calibrate.grid", cal.grid, GRIDS, src)
        check_choice("calibrate.tie_policy", cal.tie_policy, TIE_POLICIES, src)
        check_choice("calibrate.confidence", cal.confidence,
                     {**CONFIDENCE_MEASURES, AUTO: "choose on the training split's validation part"},
                     src)
        if cal.by is not None:
            check_choice("calibrate.by", cal.by, GROUP_COLUMNS, src)
        if not isinstance(cal.compare, list):
            raise ValueError(f"{src}: calibrate.compare must be a list of measures")
        for measure in cal.compare:
            check_choice("calibrate.compare", measure, CONFIDENCE_MEASURES, src)
        if not isinstance(cal.n_grid, int) or cal.n_grid < 1:
            raise ValueError(f"{src}: calibrate.n_grid must be an integer >= 1, got {cal.n_grid!r}")
        if not 0 <= cal.grid_low < cal.grid_high <= 1:
            raise ValueError(f"{src}: need 0 <= calibrate.grid_low < calibrate.grid_high <= 1, got "
                             f"{cal.grid_low!r} and {cal.grid_high!r}")
        if cal.min_n != "auto" and (not isinstance(cal.min_n, int) or cal.min_n < 1):
            raise ValueError(f"{src}: calibrate.min_n must be 'auto' or an integer >= 1, got {cal.min_n!r}")
        check_number("calibrate.drift_significance", cal.drift_significance, src, low=0, high=1,
                     low_open=True, high_open=True, what="a number in (0, 1)")
        if not isinstance(cal.delta_split, str) and (
                not isinstance(cal.delta_split, list) or len(cal.delta_split) != n_judges):
            raise ValueError(f"{src}: calibrate.delta_split must be 'equal' or a list of {n_judges} "
                             f"weights (one per judge), got {cal.delta_split!r}")
        learned = set(LEARNED_MEASURES) & ({cal.confidence} | set(cal.compare))
        if learned and not self.fit_settings.enabled:
            raise ValueError(f"{src}: calibrate uses {sorted(learned)} but fit.enabled is false; "
                             f"enable fit or use conf_simulated / conf_predictive")
        variant = self.fit.get("variant", "marc")
        produced = f"conf_{variant}"
        if cal.confidence in LEARNED_MEASURES and cal.confidence != produced:  # (auto: never)
            raise ValueError(f"{src}: calibrate.confidence is {cal.confidence!r} but fit.variant "
                             f"{variant!r} writes {produced!r}; make them agree")

    # -- recording --------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The resolved configuration (what the run folder and the report record)."""
        out = {}
        for f in fields(self):
            if f.name == "source":
                continue
            value = getattr(self, f.name)
            out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        return out

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike) -> "PipelineConfig":
        """The configuration a run folder was made with, pointed at the folder's own data.

        The saved config may name data files that have since moved, or another ``run_dir``
        (the folder itself may have moved); the run's copies in ``run_dir/data`` are what its
        annotators and splits were built from, so they are what is used.
        """
        run_dir = os.fspath(run_dir)
        data = read_run_config(run_dir)
        data["run_dir"] = run_dir
        data["data"] = {key: value for key, value in (data.get("data") or {}).items()
                        if key not in ("demo", "comparisons", "pool", "max_items")}
        folder = RunFolder(run_dir)
        data["data"]["comparisons"], data["data"]["pool"] = folder.comparisons, folder.pool
        return cls.from_dict(data, source=folder.config)

    def replace(self, **changes: Any) -> "PipelineConfig":
        """A copy with top-level fields changed (validated again)."""
        data = self.to_dict()
        data.update(changes)
        return PipelineConfig.from_dict(data, self.source)


def read_run_config(run_dir: str | os.PathLike) -> dict:
    """The resolved configuration ``marc-ray run`` wrote into a run folder, as a mapping.

    Raises
    ------
    ContractError
        ``run_dir`` is not a run folder.
    """
    import yaml

    from .contracts import ContractError

    path = RunFolder(run_dir).config
    if not os.path.isfile(path):
        raise ContractError(os.fspath(run_dir), f"not a marc_ray run folder (no {RUN_CONFIG})",
                            hint="pass the run folder `marc-ray run` wrote (its run_dir or --out)")
    with open(path, encoding="utf-8") as stream:
        return yaml.safe_load(stream) or {}


def judge_name(config) -> str:
    """The name a judge's rows carry: ``judge_name``, else the model's short name ("replay" for a
    replay judge, which has no model: the name its annotate job writes into the rows)."""
    if config.judge_name:
        return config.judge_name
    if config.engine == "replay":
        return "replay"
    from .annotate.models import model_name

    return model_name(config.model)


# the type each section field must have, from its declared type (fields that take several types,
# ``Any`` or ``X | None``, are checked by hand in validate)
_KINDS = {"bool": (bool, "true or false"), "str": (str, "a string"), "list": (list, "a list"),
          "dict": (dict, "a mapping")}


def check_section_types(section, name: str, source: str) -> None:
    """Every field of a section has its declared type (a bool is not a number, "0.1" is not a
    float): the one error form of ``contracts.validation``."""
    for f in fields(section):
        value, declared = getattr(section, f.name), str(f.type)
        where = f"{name}.{f.name}"
        if declared == "float":
            check_number(where, value, source)
        elif declared == "int":
            check_number(where, value, source, integer=True)
        elif declared in _KINDS:
            kind, what = _KINDS[declared]
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                fail(where, what, value, source)
