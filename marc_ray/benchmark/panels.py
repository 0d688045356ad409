"""Data: judge panels from a dataset's verdicts, fit / evaluation parts, the four measures."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa

from ..annotate.replay import panel_annotations, replay_metadata
from .config import LEARNED, BenchmarkConfig, DatasetSpec


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
        from ..fit import MarcConfidence

        started = time.perf_counter()
        fit_config = config.fit_config(variant).replace(random_state=config.seed + split)
        model = MarcConfidence(fit_config).fit(table, source=f"{spec.name}:{judge}")
        confidence[variant] = model.score(evaluation, source=f"{spec.name}:{judge}")
        verdict[variant] = pred
        fit_info[variant] = {"gamma": model.gamma_, "n_train": model.n_train_,
                             "n_valid": model.n_valid_, "seconds": round(time.perf_counter() - started, 2)}
    return Scored(judge, ids[~is_fit], np.asarray(evaluation.column("human_label").to_pylist(), dtype=object),
                  groups[~is_fit], confidence, verdict, int(is_fit.sum()), fit_info)
