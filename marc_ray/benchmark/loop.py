"""The run: every dataset × measure × design × α, seeded."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import pyarrow as pa

from ..calibrate import (auroc, expected_calibration_error, fixed_grid, ranking_risk,
                         validity_study_from_agreement)
from ..contracts import agreement, table_hash
from ..datasets import get_dataset
from .config import DESIGNS, LEARNED, BenchmarkConfig
from .panels import Scored, score_judge
from .validity import cascade_validity


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
