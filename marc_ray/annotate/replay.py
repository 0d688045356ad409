"""Replay: judge outputs computed elsewhere → the annotation contract, and judge panels.

Two inputs are replayed, both long tables with one row per run:

*run table* (any engine's output, or any judge's)
    ``id``; ``annotator`` (the simulated annotator: a name); ``order`` ("ab": response_a shown
    first, "ba": response_b shown first); optional ``subset`` (the shot subset, as
    comma-separated 0-based shot indices such as "0,2"; one subset "0" when absent); and
    exactly one value column: ``p_response_a`` (P(response_a better), already mapped back
    from the order shown; null or NaN = missing run) or ``verdict`` ("a", "b", "tie"; null =
    unusable). An optional ``raw`` column (the judge's original answer) goes into the status of
    a missing run.
*verdict table* (what the dataset loaders return for the judges they ship)
    ``id``, ``judge``, ``variant`` (the prompt), ``order``, ``verdict``, ``raw``: the schema and
    its validator are ``marc_ray.contracts.verdicts``, the builder the loaders use
    ``marc_ray.datasets.verdicts.verdict_table``. :func:`panel_runs` turns it into a run table.

How a discrete verdict becomes a probability
    A verdict is about the original responses (not the position shown), and becomes
    P(response_a better) = 1 for "a", 0 for "b", 0.5 for "tie"; an unusable verdict (a
    "garbage" answer, an unparseable winner, or a run that was never made) is a *missing* run:
    NaN probability, status "missing: <reason>", never a 0.5. The probability is handed to
    :func:`marc_ray.annotate.assemble.annotation_row` as P(first-shown better) of its order
    (p for ab, 1 − p for ba), which maps it back, so replayed and engine-made rows share one code
    path.

The heuristics on replayed verdicts (from ``assemble``, unchanged)
    *predictive probability*: the mean of the zero-shot runs (the ``zero_shot`` annotator's runs
    in orders ab and ba; a missing order is skipped), so with verdicts it is 1 or 0 when both
    orders agree, 0.5 when they conflict (or on a tie), and its confidence is 1 or 0.5;
    *simulated annotators*: the mean over annotators and orders of the full-subset runs (missing
    runs skipped), i.e. the **vote share** of the panel with a tie counting half a vote each
    way; confidence max(share, 1 − share); ``pred`` its argmax (a level vote goes to "a").

Panels (:func:`panel_runs`, :func:`panel_annotations`)
    For a *target* judge, the zero-shot runs are the target's own verdicts (one prompt variant,
    both orders where they exist), and the simulated annotators are the panel: every (judge,
    prompt variant) of the chosen judges, named "judge/variant", each in both orders, with one
    shot subset. Real multi-judge verdicts thus flow through the same fit / calibrate pipeline
    as simulated annotators do: the learned confidence sees the whole panel vector
    ``probs[member, 0, order]``.

References
----------
Jung, Brahman, Choi. "Trust or Escalate: LLM Judges with Provable Guarantees for Human
Agreement". ICLR 2025.
"""

from __future__ import annotations

import json
import math
from typing import Sequence

import pyarrow as pa

from ..contracts import ORDERS, ContractError, RunLayout
from ..contracts.verdicts import validate_verdicts
from .assemble import annotation_row, annotation_table, carried_columns
from .engine import ZERO_SHOT_RUNS, RunResult

VERDICT_PROBABILITY = {"a": 1.0, "b": 0.0, "tie": 0.5}  # P(response_a better) of a verdict
REPLAY_METADATA_KEY = b"marc_ray.replay"
DEFAULT_SUBSET = "0"


def verdict_to_probability(verdict: str | None) -> float:
    """P(response_a better) of a discrete verdict: a → 1, b → 0, tie → 0.5, None → NaN (missing).

    Examples
    --------
    >>> verdict_to_probability("tie")
    0.5
    """
    if verdict is None:
        return math.nan
    if verdict not in VERDICT_PROBABILITY:
        raise ValueError(f"verdict must be one of {sorted(VERDICT_PROBABILITY)} or None, got {verdict!r}")
    return VERDICT_PROBABILITY[verdict]


def member_name(judge: str, variant: str) -> str:
    return f"{judge}/{variant}"


def panel_runs(verdicts: pa.Table, target: str, *, panel: Sequence[str] | None = None,
               variants: Sequence[str] | None = None, target_variant: str | None = None,
               source: str = "<verdicts>") -> tuple[pa.Table, str, list[str]]:
    """A verdict table → the run table of a panel for ``target`` (see the module docstring).

    Parameters
    ----------
    verdicts : pyarrow.Table
        A verdict table (:func:`validate_verdicts`).
    target : str
        The judge whose own verdicts are the zero-shot runs.
    panel : sequence of str, optional
        The judges whose (judge, variant) pairs are the simulated annotators; every judge in the
        table by default (the target included: its other prompt variants are simulated
        annotators of the same judge, as in Jung et al.).
    variants : sequence of str, optional
        The prompt variants used for panel members; all by default.
    target_variant : str, optional
        The target's variant for the zero-shot runs; by default the one with the most usable
        verdicts (ties: alphabetical).

    Returns
    -------
    runs : pyarrow.Table
        Run table with columns ``id``, ``annotator``, ``order``, ``verdict``, ``raw``.
    zero_shot : str
        The annotator name of the zero-shot runs ("zero-shot:<judge>/<variant>").
    members : list of str
        The panel members in layout order ("judge/variant", sorted by judge then variant).

    Raises
    ------
    ValueError
        An unknown target, panel judge or variant (the message lists those present).
    """
    verdicts = validate_verdicts(verdicts, source)
    judges = verdicts.column("judge").to_pylist()
    variant_column = verdicts.column("variant").to_pylist()
    usable = [v is not None for v in verdicts.column("verdict").to_pylist()]
    known_judges = sorted(set(judges))
    known_variants = sorted(set(variant_column))
    for name in [target] + list(panel or []):
        if name not in known_judges:
            raise ValueError(f"unknown judge {name!r}; the verdicts have {known_judges}")
    for name in list(variants or []) + ([target_variant] if target_variant else []):
        if name not in known_variants:
            raise ValueError(f"unknown prompt variant {name!r}; the verdicts have {known_variants}")
    if target_variant is None:
        counts: dict[str, int] = {}
        for judge, variant, ok in zip(judges, variant_column, usable):
            if judge == target:
                counts[variant] = counts.get(variant, 0) + ok
        target_variant = sorted(counts, key=lambda v: (-counts[v], v))[0]
    panel_judges = set(panel) if panel is not None else set(known_judges)
    panel_variants = set(variants) if variants is not None else set(known_variants)
    members = sorted({member_name(j, v) for j, v in zip(judges, variant_column)
                      if j in panel_judges and v in panel_variants})
    zero_shot = "zero-shot:" + member_name(target, target_variant)
    rows = []
    for row in verdicts.to_pylist():
        name = member_name(row["judge"], row["variant"])
        base = {"id": row["id"], "order": row["order"], "verdict": row["verdict"], "raw": row["raw"]}
        if row["judge"] == target and row["variant"] == target_variant:
            rows.append({**base, "annotator": zero_shot})
        if name in members:
            rows.append({**base, "annotator": name})
    runs = pa.Table.from_pylist(rows, schema=pa.schema([
        ("id", pa.string()), ("annotator", pa.string()), ("order", pa.string()),
        ("verdict", pa.string()), ("raw", pa.string())]))
    return runs, zero_shot, members


def panel_annotations(verdicts: pa.Table, target: str, *, comparisons: pa.Table | None = None,
                      panel: Sequence[str] | None = None, variants: Sequence[str] | None = None,
                      target_variant: str | None = None, source: str = "<verdicts>") -> pa.Table:
    """Annotations of ``target``'s verdicts with a judge panel as simulated annotators.

    :func:`panel_runs` followed by :func:`replay_annotations` (see both). The annotation's
    ``judge`` is ``target``.
    """
    runs, zero_shot, members = panel_runs(verdicts, target, panel=panel, variants=variants,
                                          target_variant=target_variant, source=source)
    return replay_annotations(runs, target, comparisons=comparisons, zero_shot=zero_shot,
                              annotators=members, source=source)


# ---------------------------------------------------------------------------------------------
# Run tables → annotations
# ---------------------------------------------------------------------------------------------

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
    """A run table → an annotation table (one row per item), through ``assemble.annotation_row``.

    Parameters
    ----------
    runs : pyarrow.Table
        A run table (module docstring): ``id``, ``annotator``, ``order``, optional ``subset``,
        and ``p_response_a`` or ``verdict``.
    judge : str
        The judge name written in the annotations.
    comparisons : pyarrow.Table, optional
        The comparisons (contract-validated): every one gets a row, in its order, with its human
        labels, split and group carried forward; runs of unknown ids are refused. Without it,
        items come in order of first appearance with no labels.
    zero_shot : str, optional
        The annotator whose runs are the zero-shot runs (predictive probability); none by default
        (``conf_predictive`` is then NaN).
    annotators : sequence of str, optional
        The simulated annotators in layout order; by default every other annotator, in order of
        first appearance.

    Returns
    -------
    pyarrow.Table
        In the annotation contract, layout ``RunLayout(len(annotators), subsets)`` in its
        metadata, and the annotator names and the verdict→probability policy under the
        ``marc_ray.replay`` metadata key. Runs absent from ``runs`` are "missing: not run".

    Raises
    ------
    ContractError
        Missing column, bad order / subset / value, a duplicate run, an id not in
        ``comparisons``, no simulated annotator at all.
    """
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


def replay_metadata(table: pa.Table) -> dict | None:
    """The replay record (annotator names, policy) of a replayed annotation table, if any."""
    metadata = table.schema.metadata or {}
    if REPLAY_METADATA_KEY not in metadata:
        return None
    return json.loads(metadata[REPLAY_METADATA_KEY])
