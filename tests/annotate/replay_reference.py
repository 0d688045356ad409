"""The run-table replay as it was before streaming (per-row Python): the reference that
``test_replay_stream`` compares the vectorised replay with. Kept verbatim, for tests only."""

from __future__ import annotations

import json
import math
from typing import Sequence

import pyarrow as pa

from marc_ray.annotate.assemble import annotation_row, annotation_table, carried_columns
from marc_ray.annotate.engine import ZERO_SHOT_RUNS, RunResult
from marc_ray.annotate.replay import (DEFAULT_SUBSET, REPLAY_METADATA_KEY, VERDICT_PROBABILITY,
                                      verdict_to_probability)
from marc_ray.contracts import ORDERS, ContractError, RunLayout


def _parse_subset(text, source: str, index: int) -> tuple[int, ...]:
    try:
        subset = tuple(sorted(int(part) for part in str(text).split(",")))
    except ValueError as error:
        raise ContractError(source, f"subset {text!r} is not comma-separated shot indices",
                            row=index, field="subset") from error
    if not subset or min(subset) < 0 or len(set(subset)) != len(subset):
        raise ContractError(source, f"subset {text!r} must list distinct shot indices >= 0",
                            row=index, field="subset")
    return subset


def _run_values(runs: pa.Table, source: str) -> tuple[list[float], list[str]]:
    """P(response_a better) and the status reason of each run row."""
    has_p, has_verdict = "p_response_a" in runs.column_names, "verdict" in runs.column_names
    if has_p == has_verdict:
        raise ContractError(source, "give exactly one value column", field="p_response_a",
                            hint="p_response_a (probabilities) or verdict (a / b / tie)")
    raw = runs.column("raw").to_pylist() if "raw" in runs.column_names else [None] * runs.num_rows
    values, reasons = [], []
    if has_p:
        column_type = runs.column("p_response_a").type
        if not (pa.types.is_floating(column_type) or pa.types.is_integer(column_type)
                or pa.types.is_null(column_type)):
            raise ContractError(source, f"probabilities must be numbers, got {column_type}",
                                field="p_response_a")
        for index, value in enumerate(runs.column("p_response_a").to_pylist()):
            if value is not None and not isinstance(value, (int, float)):
                raise ContractError(source, f"expected a number, got {value!r}", row=index,
                                    field="p_response_a")
            if value is None or math.isnan(value):
                values.append(math.nan)
                reasons.append("missing: no probability" + (f" (raw {raw[index]!r})" if raw[index] else ""))
            elif not 0.0 <= value <= 1.0:
                raise ContractError(source, f"probability {value} outside [0, 1]", row=index,
                                    field="p_response_a")
            else:
                values.append(float(value))
                reasons.append("ok")
    else:
        for index, verdict in enumerate(runs.column("verdict").to_pylist()):
            if verdict is not None and verdict not in VERDICT_PROBABILITY:
                raise ContractError(source, f"verdict {verdict!r} is not one of "
                                    f"{sorted(VERDICT_PROBABILITY)} (or null: unusable)",
                                    row=index, field="verdict")
            values.append(verdict_to_probability(verdict))
            reasons.append("ok" if verdict is not None else
                           "missing: unusable verdict" + (f" (raw {raw[index]!r})" if raw[index] else ""))
    return values, reasons


def replay_annotations(runs: pa.Table, judge: str, *, comparisons: pa.Table | None = None,
                       zero_shot: str | None = None, annotators: Sequence[str] | None = None,
                       source: str = "<runs>") -> pa.Table:
    """The pre-streaming ``marc_ray.annotate.replay.replay_annotations`` (same parameters,
    returns and errors; see its docstring), row by row through ``assemble.annotation_row``."""
    if runs.num_rows == 0:
        raise ContractError(source, "the run table has no rows")
    for name in ("id", "annotator", "order"):
        if name not in runs.column_names:
            raise ContractError(source, "missing column", field=name,
                                hint=f"columns present: {', '.join(runs.column_names)}")
    ids = [None if v is None else str(v) for v in runs.column("id").to_pylist()]
    names = runs.column("annotator").to_pylist()
    orders = runs.column("order").to_pylist()
    subset_texts = (runs.column("subset").to_pylist() if "subset" in runs.column_names
                    else [DEFAULT_SUBSET] * runs.num_rows)
    values, reasons = _run_values(runs, source)
    for index in range(runs.num_rows):
        if not ids[index]:
            raise ContractError(source, "missing id", row=index, field="id")
        if not isinstance(names[index], str) or not names[index]:
            raise ContractError(source, f"expected an annotator name, got {names[index]!r}",
                                row=index, field="annotator")
        if orders[index] not in ORDERS:
            raise ContractError(source, f"order {orders[index]!r} is not one of {list(ORDERS)}",
                                row=index, field="order")
    subsets = [_parse_subset(text, source, index) for index, text in enumerate(subset_texts)]

    if annotators is None:
        annotators = list(dict.fromkeys(n for n in names if n != zero_shot))
    annotators = list(annotators)
    if not annotators:
        raise ContractError(source, "no simulated annotator in the runs", field="annotator",
                            hint="the zero-shot annotator alone cannot fill a run layout")
    annotator_index = {name: j for j, name in enumerate(annotators)}
    layout_subsets = sorted({s for s, n in zip(subsets, names) if n in annotator_index},
                            key=lambda s: (len(s), s)) or [(0,)]
    subset_index = {s: k for k, s in enumerate(layout_subsets)}
    layout = RunLayout(len(annotators), tuple(layout_subsets))

    per_item: dict[str, dict[int, RunResult]] = {}
    for index in range(runs.num_rows):
        order = ORDERS.index(orders[index])
        p_a = values[index]
        p_first = p_a if order == 0 else 1.0 - p_a  # annotation_row maps ba back again
        result = RunResult(p_first) if reasons[index] == "ok" else RunResult(math.nan, math.nan, reasons[index])
        targets = []
        if names[index] == zero_shot:
            targets.append(ZERO_SHOT_RUNS[order])
        if names[index] in annotator_index:
            targets.append(layout.run_index(annotator_index[names[index]],
                                            subset_index[subsets[index]], order))
        item = per_item.setdefault(ids[index], {})
        for run in targets:
            if run in item:
                raise ContractError(source, f"duplicate run for item {ids[index]!r}, annotator "
                                    f"{names[index]!r}, order {orders[index]}", row=index, field="id")
            item[run] = result

    if comparisons is not None:
        known = set(comparisons.column("id").to_pylist())
        for index, item_id in enumerate(ids):
            if item_id not in known:
                raise ContractError(source, f"id {item_id!r} is not in the comparisons",
                                    row=index, field="id", hint="replay runs of the same data set")
        items = [(row["id"], carried_columns(row)) for row in comparisons.to_pylist()]
    else:
        items = [(item_id, None) for item_id in per_item]
    rows = [annotation_row(item_id, judge, layout, per_item.get(item_id, {}), carried)
            for item_id, carried in items]
    table = annotation_table(rows, layout)
    metadata = dict(table.schema.metadata or {})
    metadata[REPLAY_METADATA_KEY] = json.dumps({
        "annotators": annotators, "zero_shot": zero_shot,
        "subsets": [",".join(map(str, s)) for s in layout_subsets],
        "verdict_probability": VERDICT_PROBABILITY,
        "unusable_verdict": "missing run (NaN), never 0.5"}).encode()
    return table.replace_schema_metadata(metadata)
