"""From an annotation file to training and validation arrays.

Which rows are trained on: rows whose ``split`` is in ``FitConfig.train_splits`` (a null split
counts as training data); rows whose split is in ``valid_splits`` are the validation set
(model selection, early stopping, reported validation ranking risk). Rows with any other split
(``calibration``, ``test``, ...) are never used here, so calibration stays disjoint from
training. When no row is in a validation split, ``valid_fraction`` of the training *groups*
(the ``group`` column, else the id) is held out at random (seeded by ``random_state``), so
that items sharing a prompt never straddle the two sets.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..contracts import ContractError, read_columns, read_table, table_hash
from ..contracts.schemas import check_annotation_keys
from ..contracts.io import is_parquet, parquet_batches, parquet_schema
from ..contracts.io import file_table_hash
from .config import FitConfig
from .features import FeatureLayout, build_features
from .labels import human_labels, simulated_view
from .loss import check_pairable


@dataclass
class Arrays:
    """Features and labels of one set of items.

    features : (n, n_features) float32; agree : (n,) float 1/0; soft : (n,) float in [0, 1];
    ids : (n,) object.
    """

    features: np.ndarray
    agree: np.ndarray
    soft: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.agree)


@dataclass
class Prepared:
    train: Arrays
    valid: Arrays
    layout: FeatureLayout
    data_hash: str
    source: str
    n_without_verdict: int = 0  # rows left out: no verdict, so no features and nothing to agree
    # set name → (rows read, rows it had), for a set over FitConfig.max_rows_per_set
    sampled: dict = field(default_factory=dict)


def load_annotations(table_or_path, source: str | None = None) -> tuple[pa.Table, str]:
    """A table and a name for errors, from a table or a path."""
    if isinstance(table_or_path, pa.Table):
        return table_or_path, source or "<annotations>"
    path = os.fspath(table_or_path)
    return read_table(path), source or path


def labelled_arrays(table: pa.Table, config: FitConfig, source: str,
                    layout: FeatureLayout | None = None) -> tuple[Arrays, FeatureLayout]:
    """Features and agreement labels of every row the label mode and tie policy keep."""
    if config.label_mode == "simulated":
        table = simulated_view(table, config.held_out_annotator, source)
    features, layout = build_features(table, source, layout)
    agree, kept, soft = human_labels(table, config.tie_policy, source)
    ids = np.asarray(table.column("id").to_pylist(), dtype=object)
    features = features if kept.all() else features[kept]  # no copy when every row is kept
    return Arrays(features, agree, soft, ids[kept]), layout


def prepare(table_or_path, config: FitConfig, source: str | None = None,
            splits=None) -> Prepared:
    """Training and validation arrays from an annotation table or file.

    ``splits`` (one per row), when given, stands for the file's ``split`` column: the split
    ``marc-ray fit`` draws for a file that declares none (``fit.split``).

    Raises
    ------
    ContractError
        The file breaks the annotation contract, no row is in a training split, or the training
        set has too few agreement or disagreement cases to form pairs. Rows without a verdict
        are left out (counted in ``Prepared.n_without_verdict``), not an error.
    """
    path = _parquet_path(table_or_path)
    if path is not None:
        # a Parquet file: decide the rows on the scalar columns, then read the per-run lists of
        # the training and validation rows only (memory grows with them, not with every item)
        table, source = read_columns(path), source or path
    else:
        table, source = load_annotations(table_or_path, source)
    if table.num_rows == 0:
        raise ContractError(source, "the table has no rows", hint="fit needs labelled annotations")
    if splits is not None:  # the split `marc-ray fit` drew stands for the file's split column
        column = pa.array([None if s is None else str(s) for s in splits], pa.string())
        table = (table.set_column(table.column_names.index("split"), "split", column)
                 if "split" in table.column_names else table.append_column("split", column))
    # A row without a verdict (every run unreadable) has no features and no agreement label;
    # it is left out here and counted, and calibration and apply never accept it.
    has_verdict = _mask(pc.is_valid(table.column("pred")))
    is_train = has_verdict & _in_splits(table, config.train_splits, null=True)
    is_valid = has_verdict & _in_splits(table, config.valid_splits, null=False)
    if not is_train.any():
        raise ContractError(source, f"no row is in a training split {list(config.train_splits)}",
                            field="split", hint="set FitConfig.train_splits to the split names used")
    if not is_valid.any():
        is_valid = _hold_out_groups(table, is_train, config)
        is_train &= ~is_valid
    sampled = {}
    for name, rows in (("training", is_train), ("validation", is_valid)):
        available = int(rows.sum())
        rows[:] = _sample_rows(table, rows, config)
        if int(rows.sum()) < available:
            sampled[name] = (int(rows.sum()), available)
    if path is not None:
        # one set at a time, batch by batch: memory holds the set's features and one batch of
        # run vectors, never every row's (issue 22: the rows of the training set alone took
        # 1.4 GB at 1M items, four times their features)
        if {"id", "judge"} <= set(table.column_names):  # (missing ones: each batch's check)
            check_annotation_keys(table, source)  # a batch sees only its own rows
        data_hash = file_table_hash(path, ["id", "probs", "pred"])
        train, layout = file_arrays(path, is_train, config, source)
        valid, _ = file_arrays(path, is_valid, config, source, layout)
    else:
        data_hash = table_hash(table, ["id", "probs", "pred"])
        train, layout = _file_rows(np.flatnonzero(is_train), lambda: labelled_arrays(
            table.filter(pa.array(is_train)), config, source))
        valid, _ = _file_rows(np.flatnonzero(is_valid), lambda: labelled_arrays(
            table.filter(pa.array(is_valid)), config, source, layout))
    check_pairable(train.agree, f"{source} (training rows)")
    if len(valid) == 0 or valid.agree.all() or not valid.agree.any():
        warnings.warn(f"{source}: the validation set has {int(valid.agree.sum())} agreement and "
                      f"{int(len(valid) - valid.agree.sum())} disagreement cases; its ranking risk "
                      f"is undefined (NaN)", UserWarning, stacklevel=2)
    return Prepared(train, valid, layout, data_hash, source,
                    n_without_verdict=int((~has_verdict).sum()), sampled=sampled)


def _sample_rows(table: pa.Table, rows: np.ndarray, config: FitConfig) -> np.ndarray:
    """At most ``config.max_rows_per_set`` of the rows where ``rows`` holds: a sample seeded by
    ``random_state``, the disagreement cases and the others drawn in proportion (at least two of
    each kind that exists), so the set keeps its disagreement rate.

    Past a few hundred thousand rows more training rows add little to a model that draws
    ``n_pairs`` pairs an epoch, while each costs its features in memory: 10M items at N = K = 5
    would hold 7.6 GB of training features. Rows left out are not read, and the model's
    provenance records only the rows it was trained and validated on."""
    limit, n_rows = config.max_rows_per_set, int(rows.sum())
    if limit is None or n_rows <= limit:
        return rows
    disagrees = _disagreement_rows(table, config) & rows
    strata = [np.flatnonzero(disagrees), np.flatnonzero(rows & ~disagrees)]
    n_disagree = int(round(limit * len(strata[0]) / n_rows))
    # at least two of each kind where the set has them: training pairs need two of each
    n_disagree = min(max(n_disagree, min(2, len(strata[0]))), len(strata[0]),
                     limit - min(2, len(strata[1])))
    rng = np.random.default_rng([config.random_state, 1])  # its own stream: the hold-out's is apart
    kept = np.zeros_like(rows)
    for stratum, size in zip(strata, (n_disagree, limit - n_disagree)):
        kept[rng.choice(stratum, size=size, replace=False)] = True
    return kept


def _parquet_path(table_or_path) -> str | None:
    """The location, when it is a Parquet file or folder at a path or a URI (read column- and
    row-wise)."""
    if isinstance(table_or_path, pa.Table):
        return None
    location = os.fspath(table_or_path)
    return location if is_parquet(location) else None


FILE_BATCH_ROWS = 1 << 14  # rows of run vectors decoded at once (~60 MB at 310 runs per item)


def file_arrays(path: str, mask: np.ndarray, config: FitConfig, source: str,
                layout: FeatureLayout | None = None) -> tuple[Arrays, FeatureLayout]:
    """:func:`labelled_arrays` of the rows of a Parquet file or folder where ``mask`` holds,
    built batch by batch: the features go straight into one matrix, and only the columns the
    labels need are kept from each batch. Errors name the file's row."""
    schema = parquet_schema(path)
    features, filled, offset, label_parts = None, 0, 0, []
    for batch in parquet_batches(path, FILE_BATCH_ROWS):
        part = mask[offset:offset + batch.num_rows]
        rows = np.flatnonzero(part) + offset
        offset += batch.num_rows
        if not rows.size:
            continue
        table = pa.Table.from_batches([batch.filter(pa.array(part))], schema=schema)
        if config.label_mode == "simulated":
            table = _file_rows(rows, lambda: simulated_view(table, config.held_out_annotator,
                                                            source))
        block, layout = _file_rows(rows, lambda: build_features(table, source, layout))
        if features is None:  # one matrix for the whole set: the rows it leaves unused are
            features = np.empty((int(mask.sum()), block.shape[1]), np.float32)  # never touched
        features[filled:filled + len(block)] = block
        filled += len(block)
        label_parts.append(table.select([c for c in LABEL_COLUMNS if c in table.column_names]))
    if features is None:  # no row at all: the contract's own error for an empty table
        return labelled_arrays(pa.Table.from_batches([], schema=schema), config, source, layout)
    pa.default_memory_pool().release_unused()  # the batches' decoding, kept by the allocator
    labels = pa.concat_tables(label_parts)
    agree, kept, soft = _file_rows(np.flatnonzero(mask),
                                   lambda: human_labels(labels, config.tie_policy, source))
    ids = np.asarray(labels.column("id").to_pylist(), dtype=object)
    return Arrays(_keep_rows(features[:filled], kept), agree, soft, ids[kept]), layout


LABEL_COLUMNS = ("id", "pred", "human_label", "votes_a", "votes_b", "votes_tie")


def _keep_rows(matrix: np.ndarray, kept: np.ndarray, block: int = 1 << 14) -> np.ndarray:
    """``matrix[kept]`` built in place, block by block (no second copy of the matrix): kept
    rows only move up, so each block is read before anything is written over it."""
    if kept.all():
        return matrix
    end = 0
    for lo in range(0, len(kept), block):
        rows = np.flatnonzero(kept[lo:lo + block]) + lo
        matrix[end:end + len(rows)] = matrix[rows]
        end += len(rows)
    return matrix[:end]


def _file_rows(rows: np.ndarray, function):
    """``function()``, with any error's row (a position among ``rows``) mapped back to the file's
    row: errors must name the row a user sees in the file, not its position among the rows a
    filter kept (a bad value in file row 5 is not "row 1")."""
    try:
        return function()
    except ContractError as error:
        if error.row is None:
            raise
        raise ContractError(error.source, error.problem, row=int(rows[error.row]),
                            field=error.field, hint=error.hint) from error


def _mask(values) -> np.ndarray:
    """A boolean Arrow array (nulls: False) as numpy."""
    return pc.fill_null(values, False).to_numpy(zero_copy_only=False).astype(bool)


def _in_splits(table: pa.Table, names, null: bool) -> np.ndarray:
    """Rows whose ``split`` is one of ``names`` (a null split, or no split column: ``null``);
    column-wise, no Python object per row (a million rows at scale)."""
    if "split" not in table.column_names:
        return np.full(table.num_rows, null)
    split = pc.cast(table.column("split"), pa.string())
    named = _mask(pc.is_in(split, value_set=pa.array(list(names), pa.string())))
    return named | (_mask(pc.is_null(split)) & null)


def _group_keys(table: pa.Table) -> pa.ChunkedArray:
    """Each row's group: its ``group`` as text, else ``id:<id>`` (an item is its own group)."""
    own = pc.binary_join_element_wise("id:", pc.cast(table.column("id"), pa.string()), "")
    if "group" not in table.column_names:
        return own
    group = pc.cast(table.column("group"), pa.string())
    return pc.if_else(pc.is_null(group), own, group)


def _hold_out_groups(table: pa.Table, candidates: np.ndarray, config: FitConfig) -> np.ndarray:
    """Hold out ``valid_fraction`` of the candidate groups for model selection, stratified.

    Groups with a disagreement case and groups without one are drawn separately, so the
    validation set gets both kinds whenever there are two groups of each (a validation set of
    agreements only leaves the ranking risk undefined). Whole groups move, never single items.
    Keys are matched column-wise (one Python string per distinct group, not per row).
    """
    keys = _group_keys(table)
    disagrees = _disagreement_rows(table, config) & candidates

    def distinct(rows: np.ndarray) -> set:
        return set(pc.unique(keys.filter(pa.array(rows))).to_pylist())

    with_disagreement = distinct(disagrees)
    every = distinct(candidates)
    rng = np.random.default_rng(config.random_state)
    chosen: set = set()
    for stratum in (with_disagreement, every - with_disagreement):
        ordered = rng.permutation(np.array(sorted(stratum), dtype=object))
        n_valid = int(round(config.valid_fraction * len(ordered)))
        if len(ordered) >= 2:
            n_valid = min(max(1, n_valid), len(ordered) - 1)  # keep some of each kind to train on
        chosen.update(ordered[:n_valid])
    if not chosen:  # too few groups to stratify: one group, as before
        chosen = {rng.permutation(np.array(sorted(every), dtype=object))[0]}
    return candidates & _mask(pc.is_in(keys, value_set=pa.array(sorted(chosen), pa.string())))


def _disagreement_rows(table: pa.Table, config: FitConfig) -> np.ndarray:
    """Rows whose verdict a human label contradicts (under the tie policy); False without labels."""
    if "human_label" not in table.column_names or config.label_mode != "human":
        return np.zeros(table.num_rows, dtype=bool)
    labels = pc.cast(table.column("human_label"), pa.string())
    pred = pc.cast(table.column("pred"), pa.string())
    counted = _mask(pc.is_in(labels, value_set=pa.array(["a", "b"])))
    if config.tie_policy == "disagree":
        counted |= _mask(pc.equal(labels, "tie"))
    differs = pc.fill_null(pc.not_equal(labels, pred), True)  # no verdict differs from a label
    return counted & _mask(differs)
