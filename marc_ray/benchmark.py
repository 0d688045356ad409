"""The real-data benchmark: how much can a judge decide under a guarantee, per confidence measure?

For each dataset of the configuration (a public human-preference set whose judge verdicts ship
with it), this module

1. loads the comparisons and verdicts (:mod:`marc_ray.datasets`) and replays them as a judge
   panel (:func:`marc_ray.annotate.replay.panel_annotations`): the *target* judge's own verdicts
   in both orders are the zero-shot runs, every (judge, prompt variant) is a simulated
   annotator;
2. splits the items, seeded, into a *fit* part (trains the learned measures) and an
   *evaluation* part (group-aware when ``split_by: group``), so every figure is held out;
3. scores four confidence measures on the evaluation part, each with its own verdict:

   ==============  ==========================================  ===========================
   measure         confidence                                  verdict
   ==============  ==========================================  ===========================
   predictive      ``conf_predictive`` (target, both orders)   argmax of ``p_predictive``
   simulated       ``conf_simulated`` (the panel's vote share)  ``pred``
   vanilla         ``conf_vanilla`` (learned, fixed margin)     ``pred``
   marc            ``conf_marc`` (learned, adaptive margin)     ``pred``
   ==============  ==========================================  ===========================

   (an item whose target verdicts are all unusable gets predictive confidence 0.5, the least
   a max-probability can be, and the panel's verdict);
4. reports AUROC, ranking risk (1 − AUROC) and ECE of each measure against agreement with the
   human label, and, over ``n_repetitions`` seeded repetitions in both validity designs
   (``population``: calibration sets drawn with replacement, success judged on the whole
   evaluation part; ``split``: random calibration/test splits), the guarantee success rate
   with its exact 95% interval and the mean coverage, for every α at the configured δ, for
   the single target judge and for a cascade of judges (cheapest first, δ split equally).

The same random state is used for every measure at a given (dataset, design, α), so the
measures are compared on the same calibration draws.

Outputs (written atomically into the output folder): ``metrics.csv``, ``validity.csv``,
``benchmark.md`` and ``coverage_vs_alpha.png``, with ``manifest.json`` (configuration, seeds,
package versions, data hashes, the command).
"""

from __future__ import annotations

import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from . import __version__
from .annotate.replay import panel_annotations, replay_metadata
from .calibrate import (auroc, calibrate_batch, clopper_pearson_interval,
                        expected_calibration_error, fixed_grid, ranking_risk,
                        validity_study_from_agreement)
from .calibrate.routing import deciding_stage
from .contracts import ContractError, agreement, table_hash, write_json_atomic, write_text_atomic
from .datasets import get_dataset

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
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ContractError(str(path), "no such file")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise ContractError(str(path), f"malformed YAML: {error}") from error
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
        from .fit import FitConfig

        return FitConfig.from_dict({"random_state": self.seed, **self.fit, "variant": variant,
                                    "backend": "local", "tie_policy": self.tie_policy,
                                    "train_splits": ["fit"], "valid_splits": ["fit-valid"]})


def _no_unknown(data: dict, cls, source: str, row: int | None) -> None:
    names = {f.name for f in fields(cls)}
    for key in data:
        if key not in names:
            raise ContractError(source, f"unknown key {key!r}", row=row, field=key,
                                hint=f"known keys: {sorted(names)}")


# ---------------------------------------------------------------------------------------------
# Data: panels, fit / evaluation parts, measures
# ---------------------------------------------------------------------------------------------

def usable(annotations: pa.Table) -> np.ndarray:
    """Rows with a verdict and at least one simulated run (the learned measures need both)."""
    pred = annotations.column("pred").to_pylist()
    probs = annotations.column("probs").to_pylist()
    return np.array([p is not None and any(v is not None and math.isfinite(v) for v in row)
                     for p, row in zip(pred, probs)])


def fit_mask(ids: Sequence[str], groups: Sequence[str | None], split_by: str, fraction: float,
             seed: int) -> np.ndarray:
    """Which items train the learned measures: a seeded share of items, or of whole groups."""
    rng = np.random.default_rng([seed, 1])
    if split_by == "item":
        keys = np.asarray(ids, dtype=object)
    else:
        keys = np.array([g if g is not None else f"id:{i}" for g, i in zip(groups, ids)], dtype=object)
    unique = np.array(sorted(set(keys)), dtype=object)
    chosen = set(rng.permutation(unique)[:max(1, int(round(fraction * len(unique))))])
    return np.array([k in chosen for k in keys])


@dataclass
class Scored:
    """The evaluation part of one judge: each measure's confidence and verdict, human labels."""

    judge: str
    ids: np.ndarray
    human_label: np.ndarray
    groups: np.ndarray
    confidence: dict[str, np.ndarray]
    verdict: dict[str, np.ndarray]
    n_fit: int
    fit_info: dict


def score_judge(comparisons: pa.Table, verdicts: pa.Table, spec: DatasetSpec, judge: str,
                config: BenchmarkConfig, split: int = 0) -> Scored:
    """Replay ``judge``'s panel, fit the learned measures on the fit part, score the rest.

    ``split`` numbers the seeded fit / evaluation split (0: the one the validity studies use).
    """
    panel = [judge] if spec.panel == "self" else spec.panel
    table = panel_annotations(verdicts, judge, comparisons=comparisons, panel=panel,
                              variants=spec.variants, source=spec.name)
    # the split is drawn over every comparison (not only this judge's usable ones), so all
    # judges of a cascade share one fit / evaluation split
    ids = np.asarray(table.column("id").to_pylist(), dtype=object)
    groups = np.asarray(table.column("group").to_pylist(), dtype=object)
    is_fit = fit_mask(ids, groups, spec.split_by, config.fit_fraction, config.seed + split)
    keep = usable(table)
    table, ids, groups, is_fit = table.filter(pa.array(keep)), ids[keep], groups[keep], is_fit[keep]
    table = table.set_column(table.column_names.index("split"), "split",
                             pa.array(np.where(is_fit, "fit", "evaluation").tolist(), pa.string()))
    evaluation = table.filter(pa.array(~is_fit))
    p_pred = np.asarray(evaluation.column("p_predictive").to_pylist(), dtype=float)
    pred = np.asarray(evaluation.column("pred").to_pylist(), dtype=object)
    conf_pred = np.asarray(evaluation.column("conf_predictive").to_pylist(), dtype=float)
    known = np.isfinite(p_pred)
    confidence = {"predictive": np.where(known, conf_pred, 0.5),
                  "simulated": np.asarray(evaluation.column("conf_simulated").to_pylist(), dtype=float)}
    verdict = {"predictive": np.where(known, np.where(p_pred >= 0.5, "a", "b"), pred).astype(object),
               "simulated": pred}
    fit_info = {"members": replay_metadata(table)["annotators"], "n_usable": table.num_rows}
    for variant in LEARNED:
        if variant not in config.measures:
            continue
        from .fit import MarcConfidence

        started = time.perf_counter()
        fit_config = config.fit_config(variant).replace(random_state=config.seed + split)
        model = MarcConfidence(fit_config).fit(table, source=f"{spec.name}:{judge}")
        confidence[variant] = model.score(evaluation, source=f"{spec.name}:{judge}")
        verdict[variant] = pred
        fit_info[variant] = {"gamma": model.gamma_, "n_train": model.n_train_,
                             "n_valid": model.n_valid_, "seconds": round(time.perf_counter() - started, 2)}
    return Scored(judge, ids[~is_fit], np.asarray(evaluation.column("human_label").to_pylist(), dtype=object),
                  groups[~is_fit], confidence, verdict, int(is_fit.sum()), fit_info)


# ---------------------------------------------------------------------------------------------
# Cascade validity study (vectorised over repetitions)
# ---------------------------------------------------------------------------------------------

def cascade_validity(confidences: np.ndarray, agrees: np.ndarray, alpha: float, delta: float, *,
                     design: str, calibration_fraction: float, n_repetitions: int, grid,
                     groups: np.ndarray | None = None, random_state=None) -> dict:
    """Validity study of a cascade: stage l calibrated at ``delta / L`` on what stages < l left.

    Parameters
    ----------
    confidences, agrees : ndarray, shape (n_stages, n_items)
        Each stage's confidence and whether its verdict agrees with the human label.
    design : {"population", "split"}
        As in :func:`marc_ray.calibrate.validity_study_from_agreement` (groups: split only).

    Returns
    -------
    dict
        ``success_rate``, ``success_interval`` (exact 95%), ``mean_coverage``,
        ``abstention_rate``, ``stage_share`` (mean share of evaluated items decided per stage).
    """
    confidences = np.atleast_2d(np.asarray(confidences, dtype=float))
    agrees = np.atleast_2d(np.asarray(agrees, dtype=bool))
    n_stages, n_items = confidences.shape
    stage_delta = delta / n_stages
    rng = np.random.default_rng(random_state)
    size = max(1, int(round(calibration_fraction * n_items)))
    if design == "population":
        calibration = rng.integers(0, n_items, size=(n_repetitions, size))  # with replacement
        weights = np.ones((n_repetitions, n_items))                        # judged on the whole part
    elif design == "split":
        if groups is None:
            keys = rng.random((n_repetitions, n_items))
            calibration = np.argpartition(keys, size - 1, axis=1)[:, :size]
            in_calibration = np.zeros((n_repetitions, n_items), dtype=bool)
            np.put_along_axis(in_calibration, calibration, True, axis=1)
        else:
            _, group_index = np.unique(np.asarray(groups).astype(str), return_inverse=True)
            n_groups = int(group_index.max()) + 1
            chosen_size = max(1, min(n_groups - 1, int(round(calibration_fraction * n_groups))))
            keys = rng.random((n_repetitions, n_groups))
            chosen = np.zeros((n_repetitions, n_groups), dtype=bool)
            np.put_along_axis(chosen, np.argpartition(keys, chosen_size - 1, axis=1)[:, :chosen_size], True, axis=1)
            in_calibration = chosen[:, group_index]
        weights = (~in_calibration).astype(float)
    else:
        raise ValueError(f"design must be one of {list(DESIGNS)}, got {design!r}")

    thresholds = []
    remaining_calibration = None
    for stage in range(n_stages):
        if design == "population":
            confidence = confidences[stage][calibration]
            agree = agrees[stage][calibration]
        else:  # the calibration part, with test items masked below every threshold
            confidence = np.where(in_calibration, confidences[stage][None, :], -1.0)
            agree = np.broadcast_to(agrees[stage], confidence.shape)
        if remaining_calibration is not None:
            confidence = np.where(remaining_calibration, confidence, -1.0)
        threshold = calibrate_batch(confidence, agree, alpha, stage_delta, grid=grid)
        taken = confidence >= threshold[:, None]
        remaining_calibration = (confidence >= 0) & ~taken if remaining_calibration is None \
            else remaining_calibration & ~taken
        thresholds.append(threshold)
    # the deployment rule (calibrate.routing) on the evaluated items, every repetition at once
    items = confidences.T                                                   # (n_items, n_stages)
    stage_of = deciding_stage(items, np.ones(items.shape, dtype=bool), np.stack(thresholds, axis=1))
    decided = weights * (stage_of >= 0)                                     # (n_repetitions, n_items)
    accepted = decided.sum(axis=1)
    agree_routed = agrees.T[np.arange(n_items)[None, :], np.maximum(stage_of, 0)]
    wrong = (decided * ~agree_routed).sum(axis=1)
    stage_share = [float(np.mean((weights * (stage_of == stage)).sum(axis=1) / weights.sum(axis=1)))
                   for stage in range(n_stages)]
    success = (accepted == 0) | (wrong <= alpha * accepted + 1e-9)
    low, high = clopper_pearson_interval(int(success.sum()), n_repetitions, 0.95)
    return {"success_rate": float(success.mean()), "success_interval": (float(low), float(high)),
            "mean_coverage": float(np.mean(accepted / weights.sum(axis=1))),
            "abstention_rate": float(np.mean(accepted == 0)), "stage_share": stage_share}


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

def _seed(config: BenchmarkConfig, dataset: int, design: int, alpha: int) -> int:
    """One random state per (dataset, design, alpha), shared by every measure."""
    return int(np.random.SeedSequence([config.seed, dataset, design, alpha]).generate_state(1)[0])


def _take(scored: Scored, ids: Sequence[str]) -> Scored:
    """The rows of ``scored`` for ``ids``, in that order."""
    position = {item: k for k, item in enumerate(scored.ids)}
    index = np.array([position[item] for item in ids], dtype=int)
    return Scored(scored.judge, scored.ids[index], scored.human_label[index], scored.groups[index],
                  {m: v[index] for m, v in scored.confidence.items()},
                  {m: v[index] for m, v in scored.verdict.items()}, scored.n_fit, scored.fit_info)


def _agreement(scored: Scored, measure: str, tie_policy: str) -> tuple[np.ndarray, np.ndarray]:
    return agreement(scored.verdict[measure], scored.human_label, tie_policy)


def run_benchmark(config: BenchmarkConfig, log=print) -> dict:
    """Run every dataset; return ``{"metrics": [...], "validity": [...], "datasets": {...}}``."""
    try:
        import torch

        torch.set_num_threads(1)  # small MLPs: one thread is fastest on shared 2-core machines
    except ImportError:
        pass
    grid = fixed_grid(config.n_grid)
    metrics, validity, summaries = [], [], {}
    for d_index, spec in enumerate(config.datasets):
        started = time.perf_counter()
        dataset = get_dataset(spec.name)
        comparisons = dataset.load(spec.path, **spec.options)
        verdicts = dataset.load_verdicts(spec.path)
        if spec.options:  # loader options may select a subset: keep those items' verdicts
            keep = set(comparisons.column("id").to_pylist())
            verdicts = verdicts.filter(pa.array([i in keep for i in verdicts.column("id").to_pylist()]))
        judges = spec.cascade or [spec.target]
        scored = {judge: score_judge(comparisons, verdicts, spec, judge, config) for judge in judges}
        # every judge is evaluated on the items all of them could score (usually all), in the
        # target's order, so that cascade stages line up item by item
        common = set.intersection(*(set(s.ids.tolist()) for s in scored.values()))
        reference = [i for i in scored[spec.target].ids if i in common]
        scored = {judge: _take(s, reference) for judge, s in scored.items()}
        target = scored[spec.target]
        _, kept = _agreement(target, "simulated", config.tie_policy)
        groups = target.groups[kept] if spec.split_by == "group" else None
        summaries[spec.key] = {
            "target": spec.target, "cascade": judges, "n_comparisons": comparisons.num_rows,
            "n_fit": target.n_fit, "n_evaluation": int(len(target.ids)), "n_kept": int(kept.sum()),
            "panel": target.fit_info["members"], "split_by": spec.split_by,
            "data_hash": table_hash(comparisons, ["id", "human_label"]),
            "verdicts_hash": table_hash(verdicts, ["id", "judge", "variant", "order", "verdict"]),
            "fits": {judge: {k: v for k, v in s.fit_info.items() if k in LEARNED} for judge, s in scored.items()}}
        splits = [target] + [score_judge(comparisons, verdicts, spec, spec.target, config, split)
                             for split in range(1, config.metric_splits)]
        for measure in config.measures:
            metrics.append(_metrics(spec.key, spec.target, measure, splits, config.tie_policy))
            agree, _ = _agreement(target, measure, config.tie_policy)
            confidence = target.confidence[measure][kept]
            for g_index, design in enumerate(DESIGNS):
                for a_index, alpha in enumerate(config.alphas):
                    seed = _seed(config, d_index, g_index, a_index)
                    single = validity_study_from_agreement(
                        confidence, agree, alpha=alpha, delta=config.delta,
                        n_repetitions=config.n_repetitions, design=design,
                        calibration_size=config.calibration_fraction,
                        groups=groups if design == "split" else None, grid=grid, random_state=seed)
                    validity.append(_row(spec.key, measure, "single", design, alpha, config.delta,
                                         single.success_rate, single.success_interval,
                                         single.mean_coverage, single.abstention_rate, spec.target))
                    if len(judges) > 1:
                        stages = [scored[j] for j in judges]
                        cascade = cascade_validity(
                            np.stack([s.confidence[measure][kept] for s in stages]),
                            np.stack([_agreement(s, measure, config.tie_policy)[0] for s in stages]),
                            alpha, config.delta, design=design,
                            calibration_fraction=config.calibration_fraction,
                            n_repetitions=config.n_repetitions, grid=grid,
                            groups=groups if design == "split" else None, random_state=seed)
                        validity.append(_row(spec.key, measure, "cascade", design, alpha, config.delta,
                                             cascade["success_rate"], cascade["success_interval"],
                                             cascade["mean_coverage"], cascade["abstention_rate"],
                                             " -> ".join(judges)))
        summaries[spec.key]["seconds"] = round(time.perf_counter() - started, 1)
        log(f"{spec.key}: {summaries[spec.key]['n_evaluation']} evaluation items, "
            f"{summaries[spec.key]['seconds']} s")
    return {"metrics": metrics, "validity": validity, "datasets": summaries}


def _metrics(dataset: str, judge: str, measure: str, splits: list[Scored], tie_policy: str) -> dict:
    """AUROC, ranking risk, ECE of one measure, averaged over fit / evaluation splits (± sd)."""
    values: dict[str, list[float]] = {k: [] for k in ("agreement", "auroc", "ranking_risk", "ece",
                                                     "auroc_panel_verdict")}
    for scored in splits:
        agree, kept = _agreement(scored, measure, tie_policy)
        panel_agree, _ = _agreement(scored, "simulated", tie_policy)
        confidence = scored.confidence[measure][kept]
        values["agreement"].append(float(agree.mean()))
        values["auroc"].append(auroc(confidence, agree))
        values["ranking_risk"].append(ranking_risk(confidence, agree))
        values["ece"].append(expected_calibration_error(confidence, agree))
        values["auroc_panel_verdict"].append(auroc(confidence, panel_agree))
    row = {"dataset": dataset, "judge": judge, "measure": measure, "n_splits": len(splits),
           "n_evaluation": int(_agreement(splits[0], measure, tie_policy)[1].sum())}
    for key, series in values.items():
        row[key] = float(np.mean(series))
        row[f"{key}_sd"] = float(np.std(series, ddof=1)) if len(series) > 1 else 0.0
    return row


def _row(dataset, measure, setting, design, alpha, delta, rate, interval, coverage, abstention, judges):
    low, high = interval
    return {"dataset": dataset, "measure": measure, "setting": setting, "judges": judges,
            "design": design, "alpha": alpha, "delta": delta, "success_rate": rate,
            "success_low": low, "success_high": high, "mean_coverage": coverage,
            "abstention_rate": abstention, "meets_guarantee": bool(high >= 1 - delta)}


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------

def _csv(rows: list[dict]) -> str:
    import csv
    import io

    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return stream.getvalue()


def _mean_sd(row: dict, key: str) -> str:
    if row["n_splits"] > 1:
        return f"{row[key]:.3f} ± {row[key + '_sd']:.3f}"
    return f"{row[key]:.3f}"


def render_markdown(results: dict, config: BenchmarkConfig, command: str) -> str:
    """The benchmark tables in Markdown (what docs/benchmarks_real_data.md quotes)."""
    lines = [f"Command: `{command}`; seed {config.seed}; {config.n_repetitions} repetitions per cell; "
             f"delta = {config.delta}; tie policy '{config.tie_policy}'; fit fraction "
             f"{config.fit_fraction}; calibration fraction {config.calibration_fraction}.", ""]
    for name, summary in results["datasets"].items():
        lines += [f"### {name} (target {summary['target']}; {summary['n_evaluation']} held-out items, "
                  f"{summary['n_kept']} kept by the tie policy; {summary['n_fit']} fit the learned measures)", "",
                  "| measure | agreement | AUROC | ranking risk | ECE | AUROC vs panel verdict |",
                  "|---|---|---|---|---|---|"]
        for m in (r for r in results["metrics"] if r["dataset"] == name):
            cells = [_mean_sd(m, key) for key in ("agreement", "auroc", "ranking_risk", "ece",
                                                   "auroc_panel_verdict")]
            lines.append(f"| {m['measure']} | " + " | ".join(cells) + " |")
        first = next(r for r in results["metrics"] if r["dataset"] == name)
        if first["n_splits"] > 1:
            lines += ["", f"(mean ± sd over {first['n_splits']} seeded fit / evaluation splits; "
                      "the validity studies below use the first split)"]
        for setting in ("single", "cascade"):
            rows = [r for r in results["validity"] if r["dataset"] == name and r["setting"] == setting]
            if not rows:
                continue
            lines += ["", f"{setting} ({rows[0]['judges']}): success rate [95% CI] and mean coverage",
                      "", "| measure | alpha | population success | population coverage | "
                      "split success | split coverage |", "|---|---|---|---|---|---|"]
            keyed = {(r["measure"], r["alpha"], r["design"]): r for r in rows}
            for measure in config.measures:
                for alpha in config.alphas:
                    cells = []
                    for design in DESIGNS:
                        r = keyed[(measure, alpha, design)]
                        flag = "" if r["meets_guarantee"] else " **below**"
                        cells += [f"{r['success_rate']:.3f} [{r['success_low']:.3f}, {r['success_high']:.3f}]{flag}",
                                  f"{r['mean_coverage']:.3f}"]
                    lines.append(f"| {measure} | {alpha} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def plot_coverage(results: dict, config: BenchmarkConfig, path: Path) -> None:
    """Mean coverage vs alpha per measure (population solid, split dashed), one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["datasets"])
    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for axis, name in zip(axes[0], names):
        for color, measure in enumerate(config.measures):
            for design, style in (("population", "-"), ("split", "--")):
                rows = sorted((r for r in results["validity"] if r["dataset"] == name and
                               r["measure"] == measure and r["design"] == design and
                               r["setting"] == "single"), key=lambda r: r["alpha"])
                axis.plot([r["alpha"] for r in rows], [r["mean_coverage"] for r in rows], style,
                          color=f"C{color}", marker="o", markersize=3, label=f"{measure} ({design})")
        axis.set_title(f"{name}: {results['datasets'][name]['target']}")
        axis.set_xlabel("alpha (tolerated disagreement)")
        axis.set_ylabel(f"mean coverage (delta = {config.delta})")
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{path.name}")
    figure.savefig(temporary, dpi=120)
    plt.close(figure)
    temporary.replace(path)


def _versions() -> dict:
    versions = {"marc_ray": __version__, "python": platform.python_version()}
    for name in ("numpy", "scipy", "pyarrow", "torch"):
        module = sys.modules.get(name)
        versions[name] = getattr(module, "__version__", None) if module else None
    return versions


def write_outputs(results: dict, config: BenchmarkConfig, out: Path, command: str) -> dict:
    """Write metrics.csv, validity.csv, benchmark.md, coverage_vs_alpha.png, manifest.json."""
    out = Path(out)
    paths = {"metrics": out / "metrics.csv", "validity": out / "validity.csv",
             "markdown": out / "benchmark.md", "plot": out / "coverage_vs_alpha.png",
             "manifest": out / "manifest.json"}
    write_text_atomic(_csv(results["metrics"]), paths["metrics"])
    write_text_atomic(_csv([{k: v for k, v in r.items()} for r in results["validity"]]), paths["validity"])
    write_text_atomic(render_markdown(results, config, command), paths["markdown"])
    plot_coverage(results, config, paths["plot"])
    config_record = asdict(config)
    write_json_atomic({"command": command, "config": config_record, "versions": _versions(),
                       "datasets": results["datasets"],
                       "below_guarantee": [r for r in results["validity"] if not r["meets_guarantee"]]},
                      paths["manifest"])
    return {k: str(v) for k, v in paths.items()}
