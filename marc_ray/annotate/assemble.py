"""Run results → annotation rows, with the two heuristic confidences of the literature.

Shared by every way of producing runs (the engines through the annotate job, and replay of
verdicts computed elsewhere), so that ``pred``, ``conf_predictive`` and ``conf_simulated`` mean
the same thing everywhere:

* order ``ba`` showed response_b first, so its P(first better) is mapped back:
  P(response_a better) = 1 − p_first;
* *predictive probability*: the mean of the two zero-shot runs (orders ab, ba);
* *simulated annotators* (Jung et al., 2025): the mean over annotators and orders of the runs
  with the full K shots;
* confidence = max(p̄, 1 − p̄); prediction = "a" when p̄ ≥ 0.5 else "b" (a tie at exactly 0.5
  goes to "a"); ``pred`` is the simulated-annotator verdict, or the predictive one when every
  simulated run is missing, or null when nothing at all could be read (never dropped).

References
----------
Jung, Brahman, Choi. "Trust or Escalate: LLM Judges with Provable Guarantees for Human
Agreement". ICLR 2025.
"""

from __future__ import annotations

import json
import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from ..contracts import (CARRIED_COLUMNS, JUDGE_METADATA_KEY, RUN_STATUS_OK, RunLayout,
                         annotation_schema, carried_names)
from .engine import ZERO_SHOT_RUNS, RunResult


def to_p_response_a(p_first: float, order: int) -> float:
    """P(response_a better) from P(first-shown better); order 0 = ab, 1 = ba."""
    return p_first if order == 0 else 1.0 - p_first


def heuristic(p_response_a: np.ndarray) -> tuple[float, float, str | None]:
    """Mean, confidence and verdict of a set of runs (NaN = missing run).

    Returns
    -------
    p_mean : float
        NaN when every run is missing.
    confidence : float
        max(p_mean, 1 − p_mean), NaN when every run is missing.
    verdict : {"a", "b"} or None
    """
    values = np.asarray(p_response_a, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan, None
    p_mean = float(values.mean())
    return p_mean, max(p_mean, 1.0 - p_mean), "a" if p_mean >= 0.5 else "b"


def annotation_row(item_id: str, judge: str, layout: RunLayout,
                   results: Mapping[int, RunResult], carried: Mapping | None = None) -> dict:
    """One annotation row from the results of one item's runs.

    Parameters
    ----------
    item_id, judge : str
    layout : RunLayout
    results : mapping run index → RunResult
        Run indices from ``layout.run_index``; -1 / -2 are the zero-shot runs (ab / ba).
        Keys absent from the mapping are recorded as missing ("missing: not run").
    carried : mapping, optional
        Comparison columns carried forward (``CARRIED_COLUMNS``, then any extra carried column
        it holds: :func:`carried_columns`).
    """
    probs = np.full(layout.n_runs, np.nan, dtype=np.float32)
    mass = np.full(layout.n_runs, np.nan, dtype=np.float32)
    status = ["missing: not run"] * layout.n_runs
    for run, result in results.items():
        if run < 0:
            continue
        order = run % len(layout.orders)
        status[run] = result.status
        mass[run] = result.label_mass
        if result.status == RUN_STATUS_OK:
            probs[run] = to_p_response_a(result.p_first, order)
    zero_shot = np.full(2, np.nan, dtype=np.float32)
    for order, run in enumerate(ZERO_SHOT_RUNS):
        result = results.get(run)
        if result is not None and result.status == RUN_STATUS_OK:
            zero_shot[order] = to_p_response_a(result.p_first, order)

    full = layout.full_subset_index
    simulated_runs = [probs[layout.run_index(j, full, o)]
                      for j in range(layout.n_annotators) for o in range(len(layout.orders))]
    p_simulated, conf_simulated, pred_simulated = heuristic(np.array(simulated_runs))
    p_predictive, conf_predictive, pred_predictive = heuristic(zero_shot)

    row = {
        "id": item_id,
        "judge": judge,
        "probs": probs.tolist(),
        "label_mass": mass.tolist(),
        "status": status,
        "zero_shot_probs": zero_shot.tolist(),
        "pred": pred_simulated if pred_simulated is not None else pred_predictive,
        "p_predictive": p_predictive,
        "conf_predictive": conf_predictive,
        "p_simulated": p_simulated,
        "conf_simulated": conf_simulated,
    }
    carried = carried or {}
    for name in CARRIED_COLUMNS:
        row[name] = carried.get(name)
    for name, value in carried.items():
        row.setdefault(name, value)
    return row


def annotation_table(rows: Sequence[dict], layout: RunLayout, config=None, judge: str = "",
                     carry: Sequence[str] | None = None) -> pa.Table:
    """Annotation rows → a table in the contract's schema, layout (and judge) in its metadata.

    ``carry``: the extra carried columns (``contracts.annotation_schema``); ``config.carry``
    when a config is given and ``carry`` is not."""
    if carry is None:
        carry = tuple(getattr(config, "carry", ()) or ())
    schema = annotation_schema(layout, carry)
    if config is not None:
        schema = schema.with_metadata({**schema.metadata, **judge_metadata(config, judge)})
    return pa.Table.from_pylist(list(rows), schema=schema)


def judge_identity(config) -> dict:
    """The judge model's identity a certificate binds: engine, model (spec, path or name), mode."""
    return {"engine": str(config.engine), "model": str(config.model or ""),
            "mode": str(getattr(config, "mode", "") or "")}


def judge_metadata(config, judge: str) -> dict[bytes, bytes]:
    """The schema metadata naming the judge that wrote an annotation table (its name and model).

    ``calibrate`` records it in the certificate's binding and ``apply`` checks it, so a scored
    file of another judge cannot be routed by this judge's threshold.
    """
    return {JUDGE_METADATA_KEY: json.dumps({"name": judge, "model": judge_identity(config)},
                                           sort_keys=True).encode()}


def carried_columns(comparison_row: Mapping, carry: Sequence[str] = ()) -> dict:
    """The comparison columns an annotation row carries forward (the contract's and ``carry``)."""
    return {name: comparison_row.get(name) for name in carried_names(carry)}


def group_results(rows: Iterable[Mapping]) -> dict[str, dict[int, RunResult]]:
    """Engine output rows (``id``, ``run``, ``p_first``, ``label_mass``, ``status``) by item."""
    grouped: dict[str, dict[int, RunResult]] = {}
    for row in rows:
        p_first = row["p_first"]
        grouped.setdefault(row["id"], {})[int(row["run"])] = RunResult(
            math.nan if p_first is None else float(p_first),
            math.nan if row.get("label_mass") is None else float(row["label_mass"]),
            row["status"])
    return grouped
