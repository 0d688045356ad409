"""Item alignment: each judge's rows side by side, one row per item, one column per judge.

Calibration (the pipeline's calibrate stage), the report and ``apply`` all see items through a
cascade of judges as ``(n_items, n_judges)`` arrays of confidence and verdict. This module is the
one place that lines tables up by ``id`` into those arrays: with Arrow joins (``pc.unique``,
``pc.index_in``), no per-row Python, so it stays linear at a million items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ContractError
from .io import read_columns

SPLITS = ("train", "calibration", "test")


def as_objects(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A column as an object array in which equal values are one Python object (None for null).

    ``to_numpy`` / ``to_pylist`` make a Python string per row: ~60 bytes for each split name,
    label or group of a million items (issue 22). A column of few distinct values costs here
    one pointer per row."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    values = pc.unique(column)
    codes = pc.index_in(column, value_set=values).to_numpy(zero_copy_only=False)
    return values.to_numpy(zero_copy_only=False).astype(object)[codes]


@dataclass
class Aligned:
    """Items × judges.

    Attributes
    ----------
    ids : ndarray of object, shape (n,)
        Every id of any table, in order of first appearance (first table first).
    confidence : ndarray of float, shape (n, n_judges)
        NaN where a judge has no row (or no value) for the item.
    pred : ndarray of object, shape (n, n_judges)
        "a", "b" or None.
    extra : dict of column name → ndarray of object, shape (n,)
        Columns carried from the first table (``human_label``, ``split``, ...), None for items
        the first table lacks.
    """

    ids: np.ndarray
    confidence: np.ndarray
    pred: np.ndarray
    extra: dict


def align_items(tables: Sequence[pa.Table], confidence_columns: Sequence[str],
                carry: Sequence[str] = ("human_label", "split")) -> Aligned:
    """Line up one table per judge (each with ``id``, ``pred`` and its confidence column).

    Parameters
    ----------
    tables : sequence of pyarrow.Table, one per judge (cascade order)
    confidence_columns : sequence of str, one per table
    carry : columns of the first table to carry along, when present

    Returns
    -------
    Aligned
    """
    if len(tables) != len(confidence_columns) or not tables:
        raise ValueError(f"align_items needs one confidence column per table, got "
                         f"{len(confidence_columns)} for {len(tables)}")
    ids = pc.unique(pa.chunked_array([t.column("id").cast(pa.string()) for t in tables]))
    n, n_judges = len(ids), len(tables)
    confidence = np.full((n, n_judges), np.nan)
    pred = np.full((n, n_judges), None, dtype=object)
    rows_of = []
    for l, (table, column) in enumerate(zip(tables, confidence_columns)):
        rows = pc.index_in(table.column("id").cast(pa.string()), value_set=ids).to_numpy()
        rows_of.append(rows)
        confidence[rows, l] = table.column(column).to_numpy(zero_copy_only=False).astype(float)
        pred[rows, l] = as_objects(table.column("pred"))
    extra = {}
    for name in carry:
        if name in tables[0].column_names:
            values = np.full(n, None, dtype=object)
            values[rows_of[0]] = as_objects(tables[0].column(name))
            extra[name] = values
    return Aligned(ids.to_numpy(zero_copy_only=False).astype(object), confidence, pred, extra)


@dataclass
class ItemSet:
    """One set of items seen through a certificate (the calibration set, a test set, new data).

    Parameters
    ----------
    name : str
        "calibration", "test" or "deployment".
    confidence : ndarray of shape (n, n_stages)
        Each cascade stage's confidence on each item (NaN: not scored).
    pred : ndarray of object, shape (n, n_stages)
        Each stage's verdict, "a" or "b".
    human_label : ndarray of object, shape (n,), optional
        "a", "b" or "tie"; None for unlabelled (deployment) items.
    ids : list of str, optional
    groups : ndarray of object, shape (n,), optional
        Each item's group: its value of the certificate's group column (``group`` unless
        ``calibrate.by`` names another; None where the data has none).
    """

    name: str
    confidence: np.ndarray
    pred: np.ndarray
    human_label: np.ndarray | None = None
    ids: list | None = None
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.confidence = np.asarray(self.confidence, dtype=float)
        self.pred = np.asarray(self.pred, dtype=object)
        if self.confidence.ndim == 1:
            self.confidence, self.pred = self.confidence[:, None], self.pred[:, None]
        if self.human_label is not None:
            self.human_label = np.asarray(self.human_label, dtype=object)
            if len(self.human_label) != len(self.confidence):
                raise ValueError(f"{self.name}: {len(self.human_label)} labels for "
                                 f"{len(self.confidence)} items")

    @property
    def labelled(self) -> bool:
        return self.human_label is not None and bool(np.isin(self.human_label, ["a", "b", "tie"]).all())


def aligned_sets(score_paths: Sequence[str], names: Sequence[str], confidence: str,
                 group_column: str = "group") -> dict[str, ItemSet]:
    """Each split's items with every judge's confidence and verdict side by side.

    Parameters
    ----------
    score_paths : list of str, one per judge (cascade order)
    names : list of str
    confidence : str
        The confidence column (e.g. ``conf_marc``).
    group_column : str, default="group"
        The column whose values become each ItemSet's ``groups`` (``calibrate.by``).

    Returns
    -------
    dict split name → ItemSet with ``confidence``/``pred`` of shape (n, n_judges); items the
    first judge's table lacks have no split and are in none.
    """
    tables = []
    for path, name in zip(score_paths, names):
        # only what alignment reads: never the per-run list columns
        table = read_columns(path, ["id", "pred", confidence, "human_label", "split", "judge",
                                    group_column])
        if confidence not in table.column_names:
            raise ContractError(path, f"no confidence column {confidence!r} for judge {name!r}",
                                field=confidence, hint="enable fit, or calibrate a heuristic "
                                "(conf_simulated / conf_predictive)")
        tables.append(table)
    aligned = align_items(tables, [confidence] * len(tables),
                          carry=("human_label", "split", group_column))
    labels, splits = aligned.extra["human_label"], aligned.extra["split"]
    groups = aligned.extra.get(group_column)
    out = {}
    for split in SPLITS:
        mask = splits == split
        if mask.any():
            out[split] = ItemSet(split, aligned.confidence[mask], aligned.pred[mask], labels[mask],
                                 aligned.ids[mask].tolist(),
                                 groups[mask] if groups is not None else None)
    if "calibration" not in out:
        raise ContractError(score_paths[0], "no row is in the 'calibration' split", field="split")
    return out
