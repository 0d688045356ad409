"""Your own data without code: JSON, JSONL, CSV or Parquet with a column map and a label map.

``data.comparisons`` (and ``data.pool``) may be any of:

* JSON lines (``.jsonl``, ``.ndjson``, or JSON lines in a file named ``.json``), a JSON array
  of records (``.json``), Parquet (a file or a folder of shards), or CSV with a header
  (``.csv``; every cell is read as text);
* with ``data.columns`` mapping a contract field to the file's column, e.g.
  ``{instruction: query, response_a: response1, response_b: response2, human_label: human}``
  (unmapped contract fields keep their own name; other columns are kept as they are);
* and ``data.labels`` mapping the file's label values to ``a``, ``b`` or ``tie``, e.g.
  ``{model1: a, model2: b, TIE: tie}``, applied to ``human_label`` (a value not in the map is
  an error; an empty map leaves labels as they are).

A file without an ``id`` column (after the map) gets its 0-based row numbers as ids ("0", "1",
…). Every error names the file, the row and the file's own column.
"""

from __future__ import annotations

from contextlib import contextmanager

import pyarrow as pa
import pyarrow.compute as pc

from ..contracts import ContractError, read_table

CONTRACT_FIELDS = ("id", "instruction", "response_a", "response_b", "human_label", "human_votes",
                   "split", "group", "annotator", "model_a", "model_b")
LABELS = ("a", "b", "tie")


def check_maps(columns: dict, labels: dict, source: str = "") -> None:
    """``data.columns`` and ``data.labels`` (a ValueError naming the key, as the config's)."""
    where = f"{source}: " if source else ""
    for field, column in columns.items():
        if field not in CONTRACT_FIELDS:
            raise ValueError(f"{where}data.columns: {field!r} is not a comparison field; map "
                             f"one of {list(CONTRACT_FIELDS)} to the file's column")
        if not isinstance(column, str) or not column:
            raise ValueError(f"{where}data.columns.{field} must name a column of the file, got "
                             f"{column!r}")
    targets = list(columns.values())
    repeated = sorted({c for c in targets if targets.count(c) > 1})
    if repeated:
        raise ValueError(f"{where}data.columns maps two fields to the column {repeated[0]!r}")
    for value, label in labels.items():
        if label not in LABELS:
            raise ValueError(f"{where}data.labels.{value} must be one of {list(LABELS)}, got "
                             f"{label!r}")


def read_user_table(path: str, columns: dict | None = None, labels: dict | None = None) -> pa.Table:
    """Read ``path`` (any format above) and apply the column and label maps.

    Returns the table with contract field names, ready for ``contracts.validate_comparisons``.

    Raises
    ------
    ContractError
        An unreadable file, a mapped column the file lacks (the columns present listed), or a
        label the map does not know (its row and the file's column named).
    """
    columns, labels = dict(columns or {}), dict(labels or {})
    table = _read_csv(path) if str(path).lower().endswith(".csv") else read_table(path)
    renames = {}
    for field, column in columns.items():
        if column not in table.column_names:
            raise ContractError(path, "missing column", field=column,
                                hint=f"data.columns.{field} names it; columns present: "
                                     f"{', '.join(table.column_names)}")
        renames[column] = field
    clashing = [name for name in table.column_names
                if name in columns and name not in renames and name != columns[name]]
    table = table.drop_columns(clashing)  # a column the map replaces (e.g. an unused `id`)
    table = table.rename_columns([renames.get(name, name) for name in table.column_names])
    if labels and "human_label" in table.column_names:
        table = _map_labels(table, labels, path, columns.get("human_label", "human_label"))
    if "id" not in table.column_names:
        table = table.append_column("id", pa.array([str(i) for i in range(table.num_rows)]))
    return table


@contextmanager
def named_as_in_the_file(columns: dict):
    """Re-raise a contract error on a mapped field with the file's column name (``data.columns``):
    the user looks for ``response2`` in the file, not ``response_b``."""
    try:
        yield
    except ContractError as error:
        if error.field not in columns:
            raise
        raise ContractError(error.source, error.problem, row=error.row,
                            field=columns[error.field],
                            hint=f"data.columns.{error.field}" + (f"; {error.hint}" if error.hint
                                                                  else "")) from error


def _map_labels(table: pa.Table, labels: dict, source: str, file_column: str) -> pa.Table:
    raw = table.column("human_label")
    text = pc.cast(raw, pa.string()) if not pa.types.is_string(raw.type) else raw
    keys = pa.array([str(k) for k in labels], pa.string())
    index = pc.index_in(text, value_set=keys)
    unknown = pc.and_(pc.is_valid(text), pc.is_null(index)).to_numpy(zero_copy_only=False)
    if unknown.any():  # the first unknown label names its row
        row = int(unknown.argmax())
        raise ContractError(source, f"label {raw[row].as_py()!r} is not in data.labels", row=row,
                            field=file_column, hint="data.labels maps "
                            + ", ".join(repr(str(k)) for k in labels))
    mapped = pc.take(pa.array([str(v) for v in labels.values()], pa.string()), index)
    return table.set_column(table.column_names.index("human_label"), "human_label", mapped)


def _read_csv(path: str) -> pa.Table:
    """A CSV file with a header, every cell as text (ids and labels keep their spelling)."""
    import pyarrow.csv as pa_csv

    from ..contracts.io import read_bytes

    try:
        data = read_bytes(path)
    except (FileNotFoundError, OSError) as error:
        raise ContractError(path, "no such file") from error
    try:
        names = pa_csv.open_csv(pa.BufferReader(data)).schema.names
        table = pa_csv.read_csv(pa.BufferReader(data), convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in names}, strings_can_be_null=False))
    except (pa.ArrowInvalid, OSError) as error:
        raise ContractError(path, f"not a readable CSV file: {error}") from error
    if table.num_rows == 0:
        raise ContractError(path, "the file has no rows")
    return table
