"""The benchmark's configuration: datasets, measures, designs, α grid (YAML, strict)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from ..contracts import ContractError
from ..contracts.yaml_file import load_yaml
from ..datasets import get_dataset

MEASURES = {
    "predictive": "the target judge's own verdicts in both orders, averaged (Jung et al.'s predictive probability)",
    "simulated": "the panel's vote share (Jung et al.'s simulated annotators, with judges as annotators)",
    "vanilla": "the learned confidence with a fixed margin (marc_ray.fit, variant 'vanilla')",
    "marc": "the learned confidence with the adaptive margin (MARC; marc_ray.fit, variant 'marc')",
}
LEARNED = ("vanilla", "marc")
DESIGNS = ("population", "split")
SPLIT_BY = ("item", "group")


@dataclass
class DatasetSpec:
    """One dataset of the benchmark."""

    name: str                                  # a registered dataset with verdicts (marc_ray.datasets)
    target: str                                # the judge whose verdicts are certified
    cascade: list[str] = field(default_factory=list)  # judges cheapest first (the target among them); [] = no cascade
    path: str | None = None                    # local folder; None = the shared copy
    panel: list[str] | str | None = None       # panel judges; None = every judge; "self" = each judge's own prompts x orders
    variants: list[str] | None = None          # prompt variants of the panel; None = all
    split_by: str = "item"                     # "item" | "group": how fit / evaluation (and split-design) parts are drawn
    options: dict = field(default_factory=dict)  # extra loader arguments (e.g. LLMBar subsets)
    label: str | None = None                   # the name in the tables (default: name); must be unique

    @property
    def key(self) -> str:
        return self.label or self.name


@dataclass
class BenchmarkConfig:
    """Settings of ``marc-ray benchmark`` (YAML keys map one to one; unknown keys are errors)."""

    datasets: list[DatasetSpec]
    measures: list[str] = field(default_factory=lambda: list(MEASURES))
    alphas: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.15, 0.2, 0.25, 0.3])
    delta: float = 0.1                         # error level of every guarantee (cascades split it equally)
    n_repetitions: int = 1000                  # validity-study repetitions per (dataset, measure, design, alpha)
    calibration_fraction: float = 0.5          # share of the evaluation part in one calibration set
    fit_fraction: float = 0.4                  # share of items (or groups) that train the learned measures
    tie_policy: str = "drop"                   # contracts.TIE_POLICIES: human ties left out, or counted as disagreement
    n_grid: int = 200                          # fixed threshold grid on [0, 1] (data-independent)
    seed: int = 0                              # every random draw derives from it
    metric_splits: int = 1                     # fit / evaluation splits averaged for AUROC, RK, ECE (validity uses split 0)
    fit: dict = field(default_factory=dict)    # FitConfig overrides for the learned measures (backend local)
    output: str = "benchmark_out"              # output folder (the CLI's --out overrides it)

    @classmethod
    def from_dict(cls, data: dict, source: str = "<config>") -> "BenchmarkConfig":
        if not isinstance(data, dict):
            raise ContractError(source, "the configuration must be a mapping")
        _no_unknown(data, cls, source, None)
        if not data.get("datasets"):
            raise ContractError(source, "no dataset", field="datasets",
                                hint="list at least one {name, target} entry")
        specs = []
        for index, entry in enumerate(data["datasets"]):
            if not isinstance(entry, dict) or "name" not in entry or "target" not in entry:
                raise ContractError(source, "each dataset needs a name and a target judge",
                                    row=index, field="datasets")
            _no_unknown(entry, DatasetSpec, source, index)
            specs.append(DatasetSpec(**entry))
        config = cls(**{**data, "datasets": specs})
        config.check()
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> "BenchmarkConfig":
        path = Path(path)
        if not path.is_file():
            raise ContractError(str(path), "no such file")
        data = load_yaml(path.read_text(encoding="utf-8"), str(path))
        return cls.from_dict(data, str(path))

    def check(self) -> None:
        """Validate every value once; errors name the key, the allowed values and the value."""
        unknown = [m for m in self.measures if m not in MEASURES]
        if unknown or not self.measures:
            raise ValueError(f"measures must be a non-empty subset of {list(MEASURES)}, got {self.measures!r}")
        if not self.alphas or not all(0 < a < 1 for a in self.alphas):
            raise ValueError(f"alphas must be numbers in (0, 1), got {self.alphas!r}")
        for name in ("delta", "calibration_fraction", "fit_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)!r}")
        if not isinstance(self.metric_splits, int) or self.metric_splits < 1:
            raise ValueError(f"metric_splits must be a positive integer, got {self.metric_splits!r}")
        if not isinstance(self.n_repetitions, int) or self.n_repetitions < 1:
            raise ValueError(f"n_repetitions must be a positive integer, got {self.n_repetitions!r}")
        if self.tie_policy not in ("drop", "disagree"):
            raise ValueError(f"tie_policy must be 'drop' or 'disagree', got {self.tie_policy!r}")
        keys = [spec.key for spec in self.datasets]
        if len(set(keys)) != len(keys):
            raise ValueError(f"dataset entries need unique labels, got {keys}; set `label` on repeats")
        for spec in self.datasets:
            get_dataset(spec.name)
            if spec.split_by not in SPLIT_BY:
                raise ValueError(f"{spec.name}: split_by must be one of {list(SPLIT_BY)}, got {spec.split_by!r}")
            if isinstance(spec.panel, str) and spec.panel != "self":
                raise ValueError(f"{spec.name}: panel must be a list of judges, null or 'self', got {spec.panel!r}")
            if spec.cascade and spec.target not in spec.cascade:
                raise ValueError(f"{spec.name}: the cascade {spec.cascade} must include the target {spec.target!r}")

    def fit_config(self, variant: str):
        from ..fit import FitConfig

        return FitConfig.from_dict({"random_state": self.seed, **self.fit, "variant": variant,
                                    "backend": "local", "tie_policy": self.tie_policy,
                                    "train_splits": ["fit"], "valid_splits": ["fit-valid"]})


def _no_unknown(data: dict, cls, source: str, row: int | None) -> None:
    names = {f.name for f in fields(cls)}
    for key in data:
        if key not in names:
            raise ContractError(source, f"unknown key {key!r}", row=row, field=key,
                                hint=f"known keys: {sorted(names)}")
