"""FitConfig: every setting of the fit stage, one commented field each, validated once.

Defaults are MARC's published settings (Jin, Tao, Yu, Huang, ICML 2026; ``DESIGN.md``,
"The mathematics, exactly"): MLP 64 → 32 → 16 with ReLU and a sigmoid output, the softplus
surrogate with τ = 0.1 over 5,000 sampled agree/disagree pairs, the complexity penalty
β·sqrt(Σ‖W‖_F²)/γ with β = 1e-4, 30 epochs, learning rate 1e-3, weight decay 1e-4.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..contracts import TIE_POLICIES
from ..contracts.options import option, word_or
from ..contracts.validation import check_choice, check_number, reject_unknown

VARIANTS: dict[str, str] = {
    "marc": "adaptive margin: alternate epochs of SGD on θ with a line search over γ, both "
            "on one objective (softplus surrogate at γ + complexity penalty β·‖W‖/γ)",
    "vanilla": "vanilla learned: the same network and surrogate with the margin fixed at "
               "margin_init and no complexity penalty",
}
LABEL_MODES: dict[str, str] = {
    "human": "a(x) = 1 if the judge's verdict equals the human label (ties by tie_policy)",
    "simulated": "simulated annotator `held_out_annotator` is the pseudo-human; its runs are "
                 "removed from the features and the verdict is recomputed without it",
}
TUNE_SELECTIONS: dict[str, str] = {
    "valid_ranking_risk": "validation ranking risk 1 - AUROC (needs a validation split)",
    "bound": "the bound's right-hand side R̂K_γ + slack with unit constants (a diagnostic; "
             "not recommended: its O(·) constants are unknown)",
}
TUNE_TRAINERS = ("local", "ray_train")
BACKENDS: dict[str, str] = {
    "local": "the training loop in this process (no Ray)",
    "ray": "the same loop on Ray Train (TorchTrainer, DDP over num_workers workers)",
}


@dataclass(frozen=True)
class FitConfig:
    """Settings of the MARC confidence model and of how it is trained.

    Validated once, at construction: a bad value raises ``ValueError`` naming the field, the
    allowed values or range and the value received. ``from_dict`` rejects unknown keys.
    """

    # --- model ---
    variant: str = option("marc", "how the margin is learned: one of VARIANTS")
    hidden_sizes: tuple[int, ...] = option((64, 32, 16), "MLP widths; ReLU between, sigmoid on "
                                                         "the output")
    # --- loss and margin ---
    temperature: float = option(0.1, "τ of softplus(−(C_i − C_j − γ)/τ); MARC: 0.1")
    n_pairs: int = option(5000, "(agree, disagree) pairs sampled per epoch; MARC: 5,000")
    pairs_per_step: int = option(250, "pairs per SGD step (n_pairs / this = steps per epoch)")
    complexity_weight: float = option(1e-4, "β of the penalty β·sqrt(Σ‖W_l‖_F²)/γ; MARC: 1e-4")
    margin_init: float = option(0.1, "γ at epoch 0 (and the fixed γ of 'vanilla'); in confidence "
                                     "units")
    margin_min: float = option(0.001, "smallest γ of the line search (> 0: the penalty divides "
                                      "by γ); below sqrt(β‖W‖τ) ≈ 0.008, the smallest optimum β "
                                      "= 1e-4 gives (0.01 cut it off on PandaLM / LLMFAO: "
                                      "docs/benchmarks_fit.md)")
    margin_max: float = option(1.0, "largest γ; C ∈ (0, 1) so C_i − C_j < 1 always")
    margin_grid_size: int = option(50, "candidate γ, geometric between margin_min and margin_max")
    delta_prime: float = option(0.05, "δ′ of the bound's ln(3 m_p / δ′) term")
    # --- optimisation ---
    epochs: int = option(30, "training epochs; MARC: 30")
    learning_rate: float = option(1e-3, "AdamW step size; MARC: 1e-3")
    weight_decay: float = option(1e-4, "AdamW decoupled weight decay; MARC: 1e-4")
    random_state: int = option(0, "seeds weights, pair sampling and the validation split")
    # --- labels ---
    label_mode: str = option("human", "what counts as the human label: one of LABEL_MODES")
    held_out_annotator: int = option(0, "simulated mode: the annotator used as pseudo-human")
    tie_policy: str = option("drop", "how a human tie counts: one of contracts.TIE_POLICIES")
    soft_targets: bool = option(False, "weight a pair by the gap of its items' human vote "
                                       "fractions")
    # --- data split ---
    train_splits: tuple[str, ...] = option(("train",), "`split` values trained on")
    valid_splits: tuple[str, ...] = option(("valid", "validation", "dev"), "`split` values for "
                                                                           "model selection")
    valid_fraction: float = option(0.2, "no valid split: share of groups held out (stratified by "
                                        "disagreement)")
    max_rows_per_set: int | None = option(
        200_000, "training rows read at most, and validation rows at most: beyond it a seeded "
        "sample of that many, in proportion to agreement and disagreement (each row costs its "
        "features in memory, 2.5 KB at N = K = 5; MARC draws n_pairs pairs an epoch); "
        "'all' (or null): every row", parse=word_or("all", int, "N|all"))
    # --- execution ---
    backend: str = option("local", "where training runs: one of BACKENDS")
    num_workers: int = option(2, "Ray Train workers (DDP ranks)")
    use_gpu: bool = option(False, "Ray Train workers on GPUs")
    cpus_per_worker: float = option(1.0, "CPUs requested per Ray Train worker (0.99 when nested "
                                         "in Tune)")
    max_failures: int = option(1, "worker-group restarts from the last checkpoint "
                                  "(FailureConfig)")
    storage_path: str | None = option(None, "where Ray Train keeps checkpoints: a path or a "
                                            "pyarrow filesystem URI (s3://...); None: "
                                            "~/ray_results")
    checkpoint_every: int = option(10, "Ray Train: a checkpoint (and metrics report) every N "
                                       "epochs and at the last; each report costs a ~2 s round "
                                       "trip")
    torch_threads: int = option(1, "torch CPU threads per training process; 2 threads ran ~10x "
                                   "slower than 1 on a busy 2-core machine")

    def __post_init__(self) -> None:
        _choice("variant", self.variant, VARIANTS)
        _choice("label_mode", self.label_mode, LABEL_MODES)
        _choice("tie_policy", self.tie_policy, TIE_POLICIES)
        _choice("backend", self.backend, BACKENDS)
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        for name in ("train_splits", "valid_splits"):  # one name alone means that one split
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"hidden_sizes must be positive widths, got {self.hidden_sizes!r}")
        for name in ("temperature", "learning_rate", "margin_min", "margin_max", "delta_prime"):
            _positive(name, getattr(self, name))
        for name in ("complexity_weight", "weight_decay"):
            check_number(name, getattr(self, name), low=0, what="a finite number >= 0")
        for name in ("n_pairs", "pairs_per_step", "epochs", "num_workers", "margin_grid_size",
                     "torch_threads", "checkpoint_every"):
            check_number(name, getattr(self, name), low=1, integer=True)
        for name in ("margin_init", "valid_fraction"):
            check_number(name, getattr(self, name))
        if self.max_rows_per_set == "all":
            object.__setattr__(self, "max_rows_per_set", None)
        if self.max_rows_per_set is not None:  # 4: two of each kind, what training pairs need
            check_number("max_rows_per_set", self.max_rows_per_set, low=4, integer=True)
        for name in ("held_out_annotator", "max_failures"):
            check_number(name, getattr(self, name), integer=True)
        if not 0 < self.margin_min < self.margin_max <= 1:
            raise ValueError(f"need 0 < margin_min < margin_max <= 1 (confidences lie in (0, 1)), "
                             f"got margin_min={self.margin_min}, margin_max={self.margin_max}")
        if not 0 < self.margin_init <= 1:
            raise ValueError(f"margin_init must be in (0, 1], got {self.margin_init!r}")
        if not 0 < self.delta_prime < 1:
            raise ValueError(f"delta_prime must be in (0, 1), got {self.delta_prime!r}")
        if not 0 < self.valid_fraction < 1:
            raise ValueError(f"valid_fraction must be in (0, 1), got {self.valid_fraction!r}")
        if self.held_out_annotator < 0:
            raise ValueError(f"held_out_annotator must be >= 0, got {self.held_out_annotator!r}")
        if self.max_failures < 0:
            raise ValueError(f"max_failures must be >= 0, got {self.max_failures!r}")
        _positive("cpus_per_worker", self.cpus_per_worker)
        if set(self.train_splits) & set(self.valid_splits):
            raise ValueError(f"train_splits {self.train_splits} and valid_splits "
                             f"{self.valid_splits} overlap")

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.n_pairs / self.pairs_per_step))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FitConfig":
        """Build from a mapping (a JSON file, CLI flags); unknown keys are an error."""
        reject_unknown(data, [f.name for f in fields(cls)])
        return cls(**data)

    def replace(self, **changes: Any) -> "FitConfig":
        """A copy with some fields changed (validated again)."""
        data = self.to_dict()
        data.update(changes)
        return FitConfig.from_dict(data)


def _choice(name: str, value: Any, allowed: dict[str, str]) -> None:
    check_choice(name, value, allowed)


def _positive(name: str, value: float) -> None:
    check_number(name, value, low=0, low_open=True, what="a finite number > 0")


@dataclass(frozen=True)
class TuneOptions:
    """How ``fit.tune.tune_margin`` sweeps FitConfig values (the pipeline's ``fit.tune_options``)."""

    search_space: dict | None = option(None, "FitConfig field -> Tune domain (YAML: "
                                       "{grid_search: [...]}); none: "
                                       "fit.tune.default_search_space() (β, γ range, τ, lr)")
    num_samples: int = option(8, "trials drawn from the space")
    select: str = option("valid_ranking_risk", "how the best trial is chosen: one of "
                         "TUNE_SELECTIONS")
    trainer: str = option("local", "local (a trial is one process) or ray_train (DDP trials)")
    grace_period: int = option(5, "epochs every trial runs before ASHA may stop it")
    max_concurrent_trials: int | None = option(None, "trials at once; none: as many as the "
                                               "cluster's CPUs allow")
    storage_path: str | None = option(None, "where Tune writes its results (a path or URI)")
    name: str | None = option(None, "the experiment's folder name under storage_path")

    def __post_init__(self) -> None:
        _choice("select", self.select, TUNE_SELECTIONS)
        _choice("trainer", self.trainer, dict.fromkeys(TUNE_TRAINERS, ""))
        for name in ("num_samples", "grace_period"):
            check_number(name, getattr(self, name), low=1, integer=True)
        if self.max_concurrent_trials is not None:
            check_number("max_concurrent_trials", self.max_concurrent_trials, low=1, integer=True)
        if self.search_space is not None and not isinstance(self.search_space, dict):
            raise ValueError(f"search_space must be a mapping of FitConfig fields to Tune domains, "
                             f"got {self.search_space!r}")
        unknown = sorted(set(self.search_space or {}) - {f.name for f in fields(FitConfig)})
        if unknown:
            raise ValueError(f"search_space names unknown FitConfig fields {unknown}; known: "
                             f"{sorted(f.name for f in fields(FitConfig))}")
        for name in ("storage_path", "name"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TuneOptions":
        reject_unknown(data, [f.name for f in fields(cls)], prefix="tune_options.")
        return cls(**data)


@dataclass(frozen=True)
class FitSection:
    """The pipeline's ``fit:`` section: its switches, the sweep's options and the FitConfig.

    In YAML it is one flat mapping (``fit: {epochs: 10, tune: true}``): ``enabled``, ``tune``
    and ``tune_options`` are the stage's switches, every other key is a FitConfig field.
    """

    enabled: bool = option(True, "false: no learned confidence (calibrate a heuristic)")
    tune: bool = option(False, "true: sweep with Ray Tune first, then fit the best config")
    tune_options: TuneOptions = field(default_factory=TuneOptions)
    model: FitConfig = field(default_factory=FitConfig)

    SWITCHES = ("enabled", "tune", "tune_options")

    @property
    def measure(self) -> str | None:
        """The confidence column the fit stage writes (``conf_marc`` / ``conf_vanilla``), or None."""
        return f"conf_{self.model.variant}" if self.enabled else None

    def to_dict(self) -> dict[str, Any]:
        """The flat YAML mapping (switches + every FitConfig field)."""
        return {"enabled": self.enabled, "tune": self.tune,
                "tune_options": self.tune_options.to_dict(), **self.model.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, random_state: int = 0,
                  tie_policy: str = "drop") -> "FitSection":
        """Build from the flat mapping; ``random_state`` and ``tie_policy`` default to the run's."""
        reject_unknown(data, list(cls.SWITCHES) + [f.name for f in fields(FitConfig)], prefix="fit.")
        for name in ("enabled", "tune"):
            if name in data and not isinstance(data[name], bool):
                raise ValueError(f"fit.{name} must be true or false, got {data[name]!r}")
        options = data.get("tune_options") or {}
        if not isinstance(options, dict):
            raise ValueError(f"fit.tune_options must be a mapping, got {options!r}")
        values = {k: v for k, v in data.items() if k not in cls.SWITCHES}
        values.setdefault("random_state", random_state)
        values.setdefault("tie_policy", tie_policy)
        reject_unknown(options, [f.name for f in fields(TuneOptions)], prefix="fit.tune_options.")
        try:
            tune_options = TuneOptions.from_dict(options)
        except ValueError as error:
            raise ValueError(f"fit.tune_options.{error}") from error
        return cls(enabled=data.get("enabled", True), tune=data.get("tune", False),
                   tune_options=tune_options, model=FitConfig.from_dict(values))
