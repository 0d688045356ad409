"""What the report and apply read of a scored file's run vectors, streamed batch by batch.

The run vectors (``probs``: ~300 values per item at N = K = 5) are most of a scored file: at a
million items, 312M values. Routing needs of them only each item's count of unreadable runs and
of runs (``reasons.count_unreadable``: the "no usable verdict" reason), and the report's
escalation examples the vectors of a handful of items. Both are read here one batch at a time
(``contracts.io.parquet_batches``, columns ``id`` and ``probs`` only), so memory holds one batch
of vectors and two integers per item, never the column (reading it whole cost report and apply
5.8 GB at 1M items: issue 22).
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..contracts.io import is_parquet, parquet_batches, parquet_schema, read_columns
from .reasons import count_unreadable

RUN_BATCH_ROWS = 1 << 12  # rows of run vectors held at once (~1.3M values at 312 runs per item)
COUNT_COLUMNS = ("runs_unreadable", "runs_total")  # per row: unreadable runs, runs


def _id_probs_batches(path: str, batch_rows: int):
    """(id, probs[, status]) record batches of a file in file order; a Parquet file or folder
    one batch at a time, another format (JSON lines) read whole (it is small by construction).
    ``status`` comes along where the file has it: a run the data never had is "not run"."""
    if is_parquet(path):
        columns = ["id", "probs"] + (["status"] if "status" in parquet_schema(path).names else [])
        yield from parquet_batches(path, batch_rows, columns)
    else:
        table = read_columns(path, ["id", "probs"], also=["status"])
        yield from table.to_batches(max_chunksize=batch_rows)


def _status(batch):
    return batch.column("status") if "status" in batch.schema.names else None


def has_runs(path: str | os.PathLike) -> bool:
    """Whether the file carries run vectors (``probs``)."""
    path = os.fspath(path)
    if is_parquet(path):
        return "probs" in parquet_schema(path).names
    return "probs" in read_columns(path, ["probs"]).column_names


def file_run_counts(path: str | os.PathLike, batch_rows: int = RUN_BATCH_ROWS) -> pa.Table | None:
    """``id`` and :data:`COUNT_COLUMNS` for every row of the file, in file order; None when the
    file has no ``probs``. Memory: one batch of run vectors."""
    path = os.fspath(path)
    if not has_runs(path):
        return None
    ids, unreadable, total = [], [], []
    for batch in _id_probs_batches(path, batch_rows):
        bad, count = count_unreadable(batch.column("probs"), _status(batch))
        ids.append(batch.column("id"))
        unreadable.append(bad)
        total.append(count)
    if not ids:
        return pa.table({"id": pa.array([], pa.string()), COUNT_COLUMNS[0]: pa.array([], pa.int64()),
                         COUNT_COLUMNS[1]: pa.array([], pa.int64())})
    return pa.table({"id": pa.chunked_array(ids),
                     COUNT_COLUMNS[0]: pa.array(np.concatenate(unreadable)),
                     COUNT_COLUMNS[1]: pa.array(np.concatenate(total))})


def with_run_counts(table: pa.Table, path: str | os.PathLike,
                    batch_rows: int = RUN_BATCH_ROWS) -> pa.Table:
    """``table`` (rows of the file at ``path``, read without its run vectors) with
    :data:`COUNT_COLUMNS` appended, streamed from the file; unchanged when it has no ``probs``.
    Rows are matched by position when the ids are in the same order, else by id."""
    counts = file_run_counts(path, batch_rows)
    if counts is None:
        return table
    if counts.num_rows == table.num_rows and counts.column("id").cast(pa.string()).equals(
            table.column("id").cast(pa.string())):
        rows = None
    else:
        rows = pc.index_in(table.column("id").cast(pa.string()),
                           value_set=counts.column("id").cast(pa.string()))
    for name in COUNT_COLUMNS:
        column = counts.column(name) if rows is None else counts.column(name).take(rows)
        table = table.append_column(name, column)
    return table


def file_run_vectors(path: str | os.PathLike, ids, batch_rows: int = RUN_BATCH_ROWS) -> dict:
    """id → (run vector, run statuses or None) of the rows whose id is in ``ids`` (a few: the
    report's examples), streamed; ids the file lacks are absent."""
    wanted = pa.array([str(i) for i in ids], pa.string())
    out: dict = {}
    if len(wanted) == 0 or not has_runs(os.fspath(path)):
        return out
    for batch in _id_probs_batches(os.fspath(path), batch_rows):
        keep = pc.is_in(batch.column("id").cast(pa.string()), value_set=wanted)
        if pc.any(keep).as_py():
            part = batch.filter(keep)
            statuses = (_status(part).to_pylist() if _status(part) is not None
                        else [None] * part.num_rows)
            for item, vector, status in zip(part.column("id").to_pylist(),
                                            part.column("probs").to_pylist(), statuses):
                out.setdefault(str(item), (vector, status))
    return out
