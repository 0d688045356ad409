"""Replay: judge outputs computed elsewhere → the annotation contract, and judge panels.

The run table arrives in any shape :mod:`marc_ray.annotate.run_table` reads (the canonical long
table, the verdict export, one judge's runs in both orders, OpenAI-compatible answers with top
log-probabilities); this module turns its canonical batches into annotation rows, and builds
judge panels from a *verdict table* (``id``, ``judge``, ``variant``, ``order``, ``verdict``,
``raw``: the schema and its validator are ``marc_ray.contracts.verdicts``, the builder the
loaders use ``marc_ray.datasets.verdicts.verdict_table``; :func:`panel_runs` turns it into a run
table).

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

import itertools
import json
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..contracts import ORDERS, ContractError, RunLayout, annotation_schema, carried_names
from ..contracts.io import write_atomic
from ..contracts.verdicts import validate_verdicts
from .config import AnnotateConfig
from .run_table import (DEFAULT_SUBSET, NO_PROBABILITY, NOT_RUN, OK, RAW, STATUS_TEXT, UNUSABLE,
                        VERDICT_PROBABILITY, RunBatches, TextIndex, codes, empty, encoded,
                        first_true, member_name, parse_subset, raw_reasons, run_values, as_text,
                        verdict_to_probability)

REPLAY_METADATA_KEY = b"marc_ray.replay"


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
# Run tables → annotations (streaming, column-wise)
#
# The run table is read in record batches (a Parquet file or folder through pyarrow.dataset, or
# an in-memory table): pass 1 reads the annotator and subset columns (and the ids, without
# comparisons) to fix the run layout; pass 2 maps every row to a cell (item, run) with
# pyarrow.compute / numpy and scatters its probability and status code into dense arrays for one
# range of items (float32 + uint8 per run: 5 bytes, not Python objects), then the annotation rows
# of that range are computed column-wise and written out in chunks. Memory is bounded by
# ``max_dense_bytes`` (more ranges, one pass each, beyond it), not by runs × items.
# ---------------------------------------------------------------------------------------------

CHUNK_RUNS = 1 << 21  # runs per written chunk of annotation rows
MAX_DENSE_BYTES = 2 << 30  # dense per-range arrays; beyond it the run table is scanned again


def _layout_pass(batches: RunBatches, zero_shot: str | None, annotators: Sequence[str] | None,
                 need_ids: bool):
    """Pass 1: annotator names, the subsets of the layout, and the ids in first appearance."""
    names: dict[str, None] = {}
    pairs: dict[tuple[str, str], int] = {}  # (annotator, subset text) → first row
    id_chunks = []
    has_subset = "subset" in batches.names
    for offset, batch in batches(["annotator", "subset"] + (["id"] if need_ids else [])):
        bad = first_true(empty(batch.column("annotator")))
        if bad >= 0:
            raise ContractError(batches.source, f"expected an annotator name, got "
                                f"{batch.column('annotator')[bad].as_py()!r}", row=offset + bad,
                                field="annotator")
        annotator_values, annotator = encoded(batch.column("annotator"))
        if has_subset:
            subset_values, subset = encoded(batch.column("subset"))
            bad = first_true(subset < 0)
            if bad >= 0:
                parse_subset(None, batches.source, offset + bad)
        else:
            subset_values, subset = pa.array([DEFAULT_SUBSET]), np.zeros(batch.num_rows, np.int64)
        # distinct (annotator, subset) pairs and the first row of each, in first appearance
        pair, first = np.unique(annotator * len(subset_values) + subset, return_index=True)
        annotator_names, subset_texts = annotator_values.to_pylist(), subset_values.to_pylist()
        for code, row in sorted(zip(pair.tolist(), first.tolist()), key=lambda x: x[1]):
            name = annotator_names[code // len(subset_values)]
            key = (name, subset_texts[code % len(subset_values)])
            names.setdefault(name, None)
            pairs.setdefault(key, offset + row)
        if need_ids:
            id_chunks.append(encoded(batch.column("id"))[0])
    if annotators is None:
        annotators = [name for name in names if name != zero_shot]
    annotators = list(annotators)
    if not annotators:
        raise ContractError(batches.source, "no simulated annotator in the runs", field="annotator",
                            hint="the zero-shot annotator alone cannot fill a run layout")
    parsed = {}
    for (name, text), row in sorted(pairs.items(), key=lambda pair: pair[1]):
        parsed[text] = parse_subset(text, batches.source, row)  # refuses bad subsets, any annotator
    members = set(annotators)
    layout_subsets = sorted({parsed[text] for name, text in pairs if name in members},
                            key=lambda s: (len(s), s)) or [(0,)]
    ids = pc.unique(pa.chunked_array(id_chunks, pa.string()).combine_chunks()) if need_ids else None
    return annotators, layout_subsets, parsed, ids


class _Range:
    """Dense per-run arrays of the items [lo, hi)."""

    def __init__(self, lo: int, hi: int, n_runs: int):
        self.lo, self.hi = lo, hi
        self.probs = np.full((hi - lo) * n_runs, np.nan, dtype=np.float32)
        self.status = np.zeros((hi - lo) * n_runs, dtype=np.uint8)
        self.zero_shot = np.full((hi - lo) * 2, np.nan, dtype=np.float32)
        self.zero_seen = np.zeros((hi - lo) * 2, dtype=bool)
        self.raw_cells: list[np.ndarray] = []  # cells whose status is a raw-answer reason
        self.raw_reasons: list[pa.Array] = []


def _duplicate(cells: np.ndarray, taken: np.ndarray) -> int:
    """Position of the first row whose cell an earlier row (or an earlier batch) already has."""
    if cells.size == 0:
        return -1
    order = np.argsort(cells, kind="stable")
    ranked = cells[order]
    again = np.zeros(cells.size, dtype=bool)
    again[order[1:][ranked[1:] == ranked[:-1]]] = True
    again |= taken
    return first_true(again)


def _scatter_pass(batches: RunBatches, part: _Range, item_index: TextIndex, value_column: str,
                  zero_shot: str | None, annotators: list[str], subset_of: dict[str, int],
                  layout: RunLayout, known_ids: bool, check: bool) -> None:
    """Pass 2 over the whole run table for one item range (``check``: validate every row too)."""
    source = batches.source
    subset_texts = list(subset_of)
    subset_lookup = np.array([subset_of[t] for t in subset_texts] + [-1], dtype=np.int64)
    n_runs = layout.n_runs
    for offset, batch in batches(["id", "annotator", "subset", "order", value_column, "raw"]):
        ids = batch.column("id")
        if check:
            bad = first_true(empty(ids))
            if bad >= 0:
                raise ContractError(source, "missing id", row=offset + bad, field="id")
        order_text = batch.column("order")
        order = codes(order_text, ORDERS)
        if check:
            bad = first_true(order < 0)
            if bad >= 0:
                raise ContractError(source, f"order {order_text[bad].as_py()!r} is not one of "
                                    f"{list(ORDERS)}", row=offset + bad, field="order")
        p, code, raw = run_values(batch, value_column, offset, source, check)
        item = item_index(ids)
        if check and known_ids:
            bad = first_true(item < 0)
            if bad >= 0:
                raise ContractError(source, f"id {ids[bad].as_py()!r} is not in the comparisons",
                                    row=offset + bad, field="id", hint="replay runs of the same data set")
        # annotation_row stores P(first-shown better) of its order mapped back: the same arithmetic
        p = np.where(order == 1, 1.0 - (1.0 - p), p)
        inside = (item >= part.lo) & (item < part.hi)
        local = item - part.lo
        annotator = codes(batch.column("annotator"), annotators)
        names = batch.column("annotator")

        def refuse(rows: np.ndarray, position: int) -> None:
            row = int(rows[position])
            raise ContractError(source, f"duplicate run for item {ids[row].as_py()!r}, annotator "
                                f"{names[row].as_py()!r}, order {order_text[row].as_py()}",
                                row=offset + row, field="id")

        if zero_shot is not None:
            rows = np.flatnonzero(inside & (codes(names, [zero_shot]) == 0))
            cells = local[rows] * 2 + order[rows]
            bad = _duplicate(cells, part.zero_seen[cells])
            if bad >= 0:
                refuse(rows, bad)
            part.zero_seen[cells] = True
            ok = code[rows] == OK
            part.zero_shot[cells[ok]] = p[rows[ok]]
        rows = np.flatnonzero(inside & (annotator >= 0))
        if rows.size == 0:
            continue
        if "subset" in batch.schema.names:
            subset = subset_lookup[codes(batch.column("subset"), subset_texts)[rows]]
        else:
            subset = np.full(rows.size, subset_of[DEFAULT_SUBSET], dtype=np.int64)
        run = (annotator[rows] * layout.n_subsets + subset) * len(layout.orders) + order[rows]
        cells = local[rows] * n_runs + run
        bad = _duplicate(cells, part.status[cells] != NOT_RUN)
        if bad >= 0:
            refuse(rows, bad)
        part.status[cells] = code[rows]
        part.probs[cells] = np.where(code[rows] == OK, p[rows], np.nan)
        if raw is not None:
            with_raw = code[rows] == RAW
            if with_raw.any():
                part.raw_cells.append(cells[with_raw])
                part.raw_reasons.append(raw_reasons(pc.take(raw, pa.array(rows[with_raw])),
                                                     NO_PROBABILITY if value_column == "p_response_a"
                                                     else UNUSABLE))


def _mean_confidence(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``assemble.heuristic`` row-wise: mean of the finite values (in column order), confidence."""
    total = np.zeros(values.shape[0])
    count = np.zeros(values.shape[0])
    for column in values.T.astype(np.float64):
        finite = np.isfinite(column)
        total += np.where(finite, column, 0.0)
        count += finite
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return mean, np.maximum(mean, 1.0 - mean)


def _list_array(values: pa.Array, n_rows: int, width: int) -> pa.Array:
    offsets = pa.array(np.arange(0, (n_rows + 1) * width, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, values)


def _annotation_chunks(part: _Range, item_ids: pa.Array, judge: str, layout: RunLayout,
                       carried: pa.Table | None, schema: pa.Schema, carry: Sequence[str] = ()):
    """The annotation rows of one item range, as tables of at most ``CHUNK_RUNS`` runs."""
    n_runs = layout.n_runs
    full = layout.full_subset_index
    simulated = [layout.run_index(j, full, o) for j in range(layout.n_annotators)
                 for o in range(len(layout.orders))]
    raw_cells = np.concatenate(part.raw_cells) if part.raw_cells else np.zeros(0, np.int64)
    raw_reasons = (pa.concat_arrays(part.raw_reasons) if part.raw_reasons
                   else pa.array([], pa.string()))
    by_cell = np.argsort(raw_cells, kind="stable")
    raw_cells, raw_reasons = raw_cells[by_cell], raw_reasons.take(pa.array(by_cell))
    step = max(1, CHUNK_RUNS // max(n_runs, 1))
    for a in range(0, part.hi - part.lo, step):
        b = min(a + step, part.hi - part.lo)
        m = b - a
        probs = part.probs[a * n_runs:b * n_runs]
        p_sim, conf_sim = _mean_confidence(probs.reshape(m, n_runs)[:, simulated])
        p_pred, conf_pred = _mean_confidence(part.zero_shot[2 * a:2 * b].reshape(m, 2))
        pred = np.where(np.isfinite(p_sim), np.where(p_sim >= 0.5, 1, 2),
                        np.where(np.isfinite(p_pred), np.where(p_pred >= 0.5, 1, 2), 0))
        codes = part.status[a * n_runs:b * n_runs].astype(np.int32)
        first, last = np.searchsorted(raw_cells, [a * n_runs, b * n_runs])
        dictionary = pa.concat_arrays([pa.array(STATUS_TEXT, pa.string()),
                                       raw_reasons.slice(first, last - first)])
        codes[raw_cells[first:last] - a * n_runs] = len(STATUS_TEXT) + np.arange(last - first)
        status = pc.take(dictionary, pa.array(codes))
        columns = {
            "id": item_ids.slice(part.lo + a, m),
            "judge": pc.take(pa.array([judge], pa.string()), pa.array(np.zeros(m, np.int32))),
            "probs": _list_array(pa.array(probs, pa.float32()), m, n_runs),
            "label_mass": _list_array(pa.array(np.full(m * n_runs, np.nan, np.float32)), m, n_runs),
            "status": _list_array(status, m, n_runs),
            "zero_shot_probs": _list_array(pa.array(part.zero_shot[2 * a:2 * b]), m, 2),
            "pred": pc.take(pa.array([None, "a", "b"], pa.string()), pa.array(pred)),
            "p_predictive": pa.array(p_pred), "conf_predictive": pa.array(conf_pred),
            "p_simulated": pa.array(p_sim), "conf_simulated": pa.array(conf_sim),
        }
        for name in carried_names(carry):
            kind = schema.field(name).type
            columns[name] = (pc.cast(carried.column(name).slice(part.lo + a, m).combine_chunks(), kind)
                             if carried is not None and name in carried.column_names
                             else pa.nulls(m, kind))
        yield pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)


def replay_stream(runs: pa.Table | str, judge: str, *, comparisons: pa.Table | None = None,
                  zero_shot: str | None = None, annotators: Sequence[str] | None = None,
                  source: str | None = None, max_dense_bytes: int = MAX_DENSE_BYTES,
                  carry: Sequence[str] = (), labels: tuple[str, str] = AnnotateConfig.labels):
    """A run table → its annotation table in chunks: ``(schema, iterator of tables)``.

    ``runs`` is a table or the path of a run table in any shape of
    :mod:`marc_ray.annotate.run_table` (Parquet file or folder, JSONL or JSON), read batch by
    batch. Same parameters, result and errors as :func:`replay_annotations`; the rows come chunk
    by chunk, so a caller can write them without holding them all.
    """
    source = source or (str(runs) if not isinstance(runs, pa.Table) else "<runs>")
    batches = RunBatches(runs, source, judge=judge, labels=tuple(labels))
    if zero_shot is None and batches.zero_shot is not None:  # one judge: its own runs
        zero_shot = batches.zero_shot
        annotators = annotators if annotators is not None else [zero_shot]
    value_column = "p_response_a" if "p_response_a" in batches.names else "verdict"
    has_p = value_column == "p_response_a"
    if has_p:
        kind = batches.type_of("p_response_a")
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_null(kind)):
            raise ContractError(source, f"probabilities must be numbers, got {kind}",
                                field="p_response_a")

    annotators, layout_subsets, parsed, first_ids = _layout_pass(
        batches, zero_shot, annotators, need_ids=comparisons is None)
    subset_index = {s: k for k, s in enumerate(layout_subsets)}
    subset_of = {text: subset_index.get(subset, -1) for text, subset in parsed.items()}
    subset_of.setdefault(DEFAULT_SUBSET, subset_index.get((0,), -1))
    layout = RunLayout(len(annotators), tuple(layout_subsets))
    if comparisons is not None:
        item_ids = as_text(comparisons.column("id").combine_chunks())
    else:
        item_ids = first_ids
    if carry and comparisons is None:
        raise ValueError("carry names comparison columns: give the comparisons")
    absent = [name for name in carry if name not in comparisons.column_names] if carry else []
    if absent:
        raise ContractError("<comparisons>", "missing column", field=absent[0],
                            hint="validate the comparisons with the same carry "
                            "(contracts.validate_comparisons(table, source, carry=...))")
    schema = annotation_schema(layout, carry)
    metadata = dict(schema.metadata or {})
    metadata[REPLAY_METADATA_KEY] = json.dumps({
        "annotators": annotators, "zero_shot": zero_shot,
        "subsets": [",".join(map(str, s)) for s in layout_subsets],
        "verdict_probability": VERDICT_PROBABILITY,
        "unusable_verdict": "missing run (NaN), never 0.5"}).encode()
    schema = schema.with_metadata(metadata)
    per_item = 5 * layout.n_runs + 10
    step = max(1, max_dense_bytes // per_item)
    n_items = len(item_ids)

    def chunks():
        item_index = TextIndex(item_ids)  # built once: every pass looks every batch's ids up in it
        for lo in range(0, max(n_items, 1), step):
            part = _Range(lo, min(lo + step, n_items), layout.n_runs)
            _scatter_pass(batches, part, item_index, value_column, zero_shot, annotators, subset_of,
                          layout, known_ids=comparisons is not None, check=lo == 0)
            yield from _annotation_chunks(part, item_ids, judge, layout, comparisons, schema, carry)

    return schema, chunks()


def replay_annotations(runs: pa.Table, judge: str, *, comparisons: pa.Table | None = None,
                       zero_shot: str | None = None, annotators: Sequence[str] | None = None,
                       source: str | None = None, carry: Sequence[str] = (),
                       labels: tuple[str, str] = AnnotateConfig.labels) -> pa.Table:
    """A run table → an annotation table (one row per item), the rows of ``assemble.annotation_row``.

    Parameters
    ----------
    runs : pyarrow.Table or str
        A run table (or its path) in any shape of :mod:`marc_ray.annotate.run_table` (the canonical one:
        ``id``, ``annotator``, ``order``, optional ``subset``, and ``p_response_a`` or
        ``verdict``).
    judge : str
        The judge name written in the annotations.
    comparisons : pyarrow.Table, optional
        The comparisons (contract-validated): every one gets a row, in its order, with its human
        labels, split and group carried forward; runs of unknown ids are refused. Without it,
        items come in order of first appearance with no labels.
    carry : sequence of str, optional
        Extra comparison columns to carry (``contracts.annotation_schema``); they must be in
        ``comparisons`` (``validate_comparisons(..., carry=carry)`` keeps them).
    zero_shot : str, optional
        The annotator whose runs are the zero-shot runs (predictive probability); none by default
        (``conf_predictive`` is then NaN), except for one judge's runs (no annotator column),
        which are both its one simulated annotator and its zero-shot runs.
    labels : (str, str)
        OpenAI-compatible answers only: the labels of the first- and second-shown response.
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
        A table of no accepted shape, bad order / subset / value (NaN included), a duplicate
        run, an id not in ``comparisons``, no simulated annotator at all.
    """
    schema, chunks = replay_stream(runs, judge, comparisons=comparisons, zero_shot=zero_shot,
                                   annotators=annotators, source=source, carry=carry,
                                   labels=labels)
    return pa.Table.from_batches([b for chunk in chunks for b in chunk.to_batches()], schema=schema)


def write_replay(runs: pa.Table | str, judge: str, path: str, metadata: dict | None = None,
                 **options) -> int:
    """:func:`replay_stream` written chunk by chunk to one Parquet file (atomically); its row count.

    ``metadata`` is added to the file's schema metadata (the annotate job's judge record).
    """
    schema, chunks = replay_stream(runs, judge, **options)
    if metadata:
        schema = schema.with_metadata({**(schema.metadata or {}), **metadata})
    first = next(chunks, None)  # every input error is raised before anything is written
    n_rows = 0

    def write(temporary: str) -> None:
        nonlocal n_rows
        with pq.ParquetWriter(temporary, schema) as writer:
            for table in itertools.chain([first] if first is not None else [], chunks):
                writer.write_table(table)
                n_rows += table.num_rows

    write_atomic(path, write, suffix=".parquet")
    return n_rows


def replay_metadata(table: pa.Table) -> dict | None:
    """The replay record (annotator names, policy) of a replayed annotation table, if any."""
    metadata = table.schema.metadata or {}
    if REPLAY_METADATA_KEY not in metadata:
        return None
    return json.loads(metadata[REPLAY_METADATA_KEY])
