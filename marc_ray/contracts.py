"""The data contracts: every table and record that crosses a stage boundary.

One module owns the schemas, their validators and the readers/writers, and every other
module imports from here (``../shared/DESIGN.md``, "Data contracts"). Nothing here imports
ray, torch or vllm.

Tables
------
comparison   one pairwise comparison: ``id``, ``instruction``, ``response_a``, ``response_b``,
             optional ``human_votes`` (list of {annotator, label}) or ``human_label``,
             optional ``split`` and ``group``.
pool         the few-shot pool: comparisons with an ``annotator`` id and a ``human_label``;
             used only to build simulated annotators, never calibrated or tested on.
annotation   one row per comparison and judge: the flat run vector ``probs`` (the tensor
             ``probs[annotator, shot_subset, order]`` in C order, see :class:`RunLayout`),
             the raw label mass and status of every run, the zero-shot runs, and the derived
             heuristics (``pred``, ``conf_predictive``, ``conf_simulated``). Human labels,
             ``split`` and ``group`` are carried forward so the file is self-contained.
scores       what calibration reads: ``id``, a confidence column, ``pred`` and ``human_label``.

Every validation error is a :class:`ContractError`, which names the file, the row and the field.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Literal, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

LABELS = ("a", "b", "tie")  # human labels; a judge predicts only "a" or "b"
PREDICTIONS = ("a", "b")
ORDERS = ("ab", "ba")  # ab: response_a shown first; ba: response_b shown first
TiePolicy = Literal["drop", "disagree"]
TIE_POLICIES: dict[str, str] = {
    "drop": "items whose human label is a tie (or whose votes split evenly) are left out",
    "disagree": "a tie counts as a disagreement with any verdict (conservative)",
}
RUN_STATUS_OK = "ok"


class ContractError(ValueError):
    """Bad input: names the file, the row (0-based, data rows) and the field.

    Parameters
    ----------
    source : str
        The file (or a description of the in-memory table).
    problem : str
        What is wrong, in a sentence.
    row : int or None
        The 0-based data row, when one row is at fault.
    field : str or None
        The column or key at fault.
    hint : str or None
        What the user can do about it.
    """

    def __init__(self, source: str, problem: str, row: int | None = None,
                 field: str | None = None, hint: str | None = None):
        self.source, self.problem, self.row, self.field, self.hint = source, problem, row, field, hint
        where = str(source)
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field '{field}'"
        message = f"{where}: {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


# ---------------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------------

VOTE_TYPE = pa.struct([("annotator", pa.string()), ("label", pa.string())])

COMPARISON_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("instruction", pa.string()),
    ("response_a", pa.string()),
    ("response_b", pa.string()),
    ("human_votes", pa.list_(VOTE_TYPE)),
    ("human_label", pa.string()),
    ("split", pa.string()),
    ("group", pa.string()),
])
COMPARISON_REQUIRED = ("id", "instruction", "response_a", "response_b")

POOL_SCHEMA = COMPARISON_SCHEMA.append(pa.field("annotator", pa.string()))
POOL_REQUIRED = COMPARISON_REQUIRED + ("annotator",)

# Columns carried from the comparison into its annotation row.
CARRIED_COLUMNS = ("human_label", "votes_a", "votes_b", "votes_tie", "split", "group")

ANNOTATION_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("judge", pa.string()),
    ("probs", pa.list_(pa.float32())),       # P(response_a better) per run, NaN where missing
    ("label_mass", pa.list_(pa.float32())),  # label-token mass before renormalisation (NaN: n/a)
    ("status", pa.list_(pa.string())),       # "ok" or "missing: <reason>" per run
    ("zero_shot_probs", pa.list_(pa.float32())),  # the two zero-shot runs, orders ab, ba
    ("pred", pa.string()),                   # "a" or "b": argmax of the simulated-annotator mean
    ("p_predictive", pa.float64()),
    ("conf_predictive", pa.float64()),
    ("p_simulated", pa.float64()),
    ("conf_simulated", pa.float64()),
    ("human_label", pa.string()),
    ("votes_a", pa.int32()),
    ("votes_b", pa.int32()),
    ("votes_tie", pa.int32()),
    ("split", pa.string()),
    ("group", pa.string()),
])
ANNOTATION_REQUIRED = ("id", "judge", "probs", "status", "pred")
LAYOUT_METADATA_KEY = b"marc_ray.run_layout"

SCORES_REQUIRED = ("id", "pred", "human_label")


@dataclass(frozen=True)
class RunLayout:
    """The fixed order of the simulated-annotator runs in an annotation's ``probs`` vector.

    ``probs`` is the tensor ``probs[annotator, shot_subset, order]`` flattened in C order:
    run index ``r = (j * n_subsets + s) * 2 + o``. ``subsets[s]`` lists the shot indices
    (0-based, into each annotator's K shots) of subset ``s``.
    """

    n_annotators: int
    subsets: tuple[tuple[int, ...], ...]
    orders: tuple[str, ...] = ORDERS

    @property
    def n_subsets(self) -> int:
        return len(self.subsets)

    @property
    def n_runs(self) -> int:
        return self.n_annotators * self.n_subsets * len(self.orders)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n_annotators, self.n_subsets, len(self.orders))

    @property
    def full_subset_index(self) -> int:
        """Index of the largest subset (all K shots): the one Jung et al.'s heuristic uses."""
        return max(range(self.n_subsets), key=lambda s: len(self.subsets[s]))

    def run_index(self, annotator: int, subset: int, order: int) -> int:
        return (annotator * self.n_subsets + subset) * len(self.orders) + order

    def to_json(self) -> str:
        return json.dumps({"n_annotators": self.n_annotators,
                           "subsets": [list(s) for s in self.subsets],
                           "orders": list(self.orders),
                           "axes": ["annotator", "shot_subset", "order"]})

    @classmethod
    def from_json(cls, text: str | bytes) -> "RunLayout":
        data = json.loads(text)
        return cls(int(data["n_annotators"]), tuple(tuple(s) for s in data["subsets"]),
                   tuple(data.get("orders", ORDERS)))


def annotation_schema(layout: RunLayout) -> pa.Schema:
    """The annotation schema with the run layout stored in the Parquet metadata."""
    return ANNOTATION_SCHEMA.with_metadata({LAYOUT_METADATA_KEY: layout.to_json().encode()})


def layout_of(table: pa.Table, source: str = "<table>") -> RunLayout:
    """Read the run layout from an annotation table's schema metadata."""
    metadata = table.schema.metadata or {}
    if LAYOUT_METADATA_KEY not in metadata:
        raise ContractError(source, "the annotation table has no run layout in its metadata",
                            field="probs", hint="write annotation files with "
                            "marc_ray.contracts.annotation_schema(layout)")
    return RunLayout.from_json(metadata[LAYOUT_METADATA_KEY])


# ---------------------------------------------------------------------------------------------
# Human labels
# ---------------------------------------------------------------------------------------------

def majority_label(votes: Sequence[str]) -> str:
    """The majority of human votes; ``"tie"`` when a and b are level (tie votes break nothing).

    Examples
    --------
    >>> majority_label(["a", "a", "b"])
    'a'
    >>> majority_label(["a", "b", "tie"])
    'tie'
    """
    n_a = sum(v == "a" for v in votes)
    n_b = sum(v == "b" for v in votes)
    n_tie = sum(v == "tie" for v in votes)
    if n_a > n_b and n_a >= n_tie:
        return "a"
    if n_b > n_a and n_b >= n_tie:
        return "b"
    return "tie"


def agreement(pred: np.ndarray, human_label: np.ndarray, tie_policy: str = "drop"
              ) -> tuple[np.ndarray, np.ndarray]:
    """Agreement of verdicts with human labels under a tie policy.

    Parameters
    ----------
    pred : array of str, shape (n,)
        The judge's verdicts, "a" or "b".
    human_label : array of str, shape (n,)
        "a", "b" or "tie".
    tie_policy : {"drop", "disagree"}
        See ``TIE_POLICIES``.

    Returns
    -------
    agree : ndarray of bool, shape (n_kept,)
    kept : ndarray of bool, shape (n,)
        Which items the policy keeps.
    """
    if tie_policy not in TIE_POLICIES:
        raise ValueError(f"tie_policy must be one of {sorted(TIE_POLICIES)}, got {tie_policy!r}")
    pred = np.asarray(pred, dtype=object)
    human_label = np.asarray(human_label, dtype=object)
    is_tie = human_label == "tie"
    kept = ~is_tie if tie_policy == "drop" else np.ones(len(pred), dtype=bool)
    agree = (pred == human_label) & ~is_tie
    return agree[kept].astype(bool), kept


# ---------------------------------------------------------------------------------------------
# Reading and writing
# ---------------------------------------------------------------------------------------------

def _filesystem_and_path(path: str):
    """A pyarrow filesystem for ``path`` (local paths and any URI pyarrow supports)."""
    from pyarrow import fs

    if "://" in str(path):
        return fs.FileSystem.from_uri(str(path))
    return fs.LocalFileSystem(), os.path.abspath(os.fspath(path))


def read_table(path: str | os.PathLike) -> pa.Table:
    """Read a JSONL / JSON-lines or Parquet file (or a folder of Parquet shards) into a table.

    Raises
    ------
    ContractError
        If the file is missing, empty, of an unknown format, or a JSON line is malformed.
    """
    path = os.fspath(path)
    filesystem, resolved = _filesystem_and_path(path)
    from pyarrow import fs

    info = filesystem.get_file_info(resolved)
    if info.type == fs.FileType.NotFound:
        raise ContractError(path, "no such file")
    lower = path.lower().rstrip("/")
    if info.type == fs.FileType.Directory or lower.endswith(".parquet"):
        try:
            return pq.read_table(resolved, filesystem=filesystem)
        except (pa.ArrowInvalid, OSError) as error:
            raise ContractError(path, f"not a readable Parquet file or folder: {error}") from error
    if lower.endswith((".jsonl", ".json", ".ndjson")):
        rows = []
        with filesystem.open_input_stream(resolved) as stream:
            text = stream.read().decode("utf-8")
        stripped = text.lstrip()
        if lower.endswith(".json") and stripped.startswith("["):
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as error:
                raise ContractError(path, f"malformed JSON: {error.msg}",
                                    hint=f"line {error.lineno}, column {error.colno}") from error
        else:
            for line_number, line in enumerate(text.splitlines()):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ContractError(path, f"malformed JSON line: {error.msg}",
                                        row=len(rows), hint=f"line {line_number + 1}") from error
                if not isinstance(row, dict):
                    raise ContractError(path, "each line must be a JSON object", row=len(rows))
                rows.append(row)
        if not rows:
            raise ContractError(path, "the file has no rows")
        return rows_to_table(rows, path)
    raise ContractError(path, "unknown file format", hint="use .jsonl, .json or .parquet")


def rows_to_table(rows: list[dict], source: str = "<rows>") -> pa.Table:
    """Rows (dicts) to a table, with a ContractError naming the row when types clash."""
    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        # Find the first row whose fields cannot be typed like the first row's.
        for index in range(1, len(rows)):
            try:
                pa.Table.from_pylist(rows[: index + 1])
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                keys = sorted(set(rows[index]) | set(rows[0]))
                for key in keys:
                    try:
                        pa.array([r.get(key) for r in rows[: index + 1]])
                    except (pa.ArrowInvalid, pa.ArrowTypeError):
                        raise ContractError(source, f"value of a different type than earlier rows: "
                                            f"{rows[index].get(key)!r}", row=index, field=key) from error
        raise ContractError(source, f"rows cannot form a table: {error}") from error


def write_table_atomic(table: pa.Table, path: str | os.PathLike) -> None:
    """Write Parquet atomically: to a temporary file beside ``path``, then rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=folder)
    os.close(handle)
    try:
        pq.write_table(table, temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write a text file atomically (temporary file + rename)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_json_atomic(data: Any, path: str | os.PathLike) -> None:
    """Write JSON atomically, with NaN/inf as strings so any JSON reader accepts the file."""
    write_text_atomic(json.dumps(_json_safe(data), indent=2, sort_keys=False) + "\n", path)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return [_json_safe(v) for v in value.tolist()]
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    return value


def table_hash(table: pa.Table, columns: Iterable[str] | None = None) -> str:
    """A SHA-256 of a table's content (selected columns, in order), independent of chunking."""
    digest = hashlib.sha256()
    names = list(columns) if columns is not None else table.column_names
    for name in names:
        digest.update(name.encode())
        column = table.column(name).combine_chunks() if table.num_rows else table.column(name)
        digest.update(json.dumps(column.to_pylist(), default=str).encode())
    return "sha256:" + digest.hexdigest()


def file_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (for manifests)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

def _require_columns(table: pa.Table, required: Sequence[str], source: str) -> None:
    for name in required:
        if name not in table.column_names:
            raise ContractError(source, "missing column", field=name,
                                hint=f"columns present: {', '.join(table.column_names)}")


def _check_strings(table: pa.Table, name: str, source: str, allowed: Sequence[str] | None = None,
                   nullable: bool = False) -> None:
    values = table.column(name).to_pylist()
    for index, value in enumerate(values):
        if value is None:
            if nullable:
                continue
            raise ContractError(source, "missing value", row=index, field=name)
        if not isinstance(value, str):
            raise ContractError(source, f"expected text, got {type(value).__name__} {value!r}",
                                row=index, field=name)
        if allowed is not None and value not in allowed:
            raise ContractError(source, f"label {value!r} is not one of {list(allowed)}",
                                row=index, field=name)


def _check_unique_ids(table: pa.Table, source: str) -> None:
    seen: dict[str, int] = {}
    for index, value in enumerate(table.column("id").to_pylist()):
        if value in seen:
            raise ContractError(source, f"duplicate id {value!r} (first seen in row {seen[value]})",
                                row=index, field="id")
        seen[value] = index


def _normalise_ids(table: pa.Table) -> pa.Table:
    """Integer ids (common in public files) become strings."""
    column = table.column("id")
    if pa.types.is_integer(column.type):
        table = table.set_column(table.column_names.index("id"), "id", pc.cast(column, pa.string()))
    return table


def validate_comparisons(table: pa.Table, source: str = "<comparisons>", *,
                         require_labels: bool = False, pool: bool = False) -> pa.Table:
    """Check a comparison (or few-shot pool) table and return it in the contract's schema.

    ``human_label`` is resolved from ``human_votes`` (majority, see :func:`majority_label`) when
    only votes are given; ``votes_a``/``votes_b``/``votes_tie`` count the votes.

    Raises
    ------
    ContractError
        Missing column, empty table, duplicate id, empty text, a label outside {a, b, tie},
        a malformed vote, or (``require_labels``) an item with no human label.
    """
    if table.num_rows == 0:
        raise ContractError(source, "the table has no rows")
    _require_columns(table, POOL_REQUIRED if pool else COMPARISON_REQUIRED, source)
    table = _normalise_ids(table)
    for name in ("id", "instruction", "response_a", "response_b") + (("annotator",) if pool else ()):
        if name == "annotator" and pa.types.is_integer(table.column(name).type):
            table = table.set_column(table.column_names.index(name), name,
                                     pc.cast(table.column(name), pa.string()))
        _check_strings(table, name, source)
    for index, value in enumerate(table.column("id").to_pylist()):
        if not value.strip():
            raise ContractError(source, "empty id", row=index, field="id")
    _check_unique_ids(table, source)

    n = table.num_rows
    votes_column = table.column("human_votes").to_pylist() if "human_votes" in table.column_names else [None] * n
    label_column = table.column("human_label").to_pylist() if "human_label" in table.column_names else [None] * n
    labels, votes_out, counts = [], [], {"a": [], "b": [], "tie": []}
    for index in range(n):
        votes, label = votes_column[index], label_column[index]
        if votes is not None:
            if not isinstance(votes, list):
                raise ContractError(source, "human_votes must be a list of {annotator, label}",
                                    row=index, field="human_votes")
            for vote in votes:
                if not isinstance(vote, dict) or vote.get("label") not in LABELS:
                    raise ContractError(source, f"vote {vote!r} has no label in {list(LABELS)}",
                                        row=index, field="human_votes")
            vote_labels = [v["label"] for v in votes]
            if label is None and vote_labels:
                label = majority_label(vote_labels)
            votes_out.append([{"annotator": None if v.get("annotator") is None else str(v["annotator"]),
                               "label": v["label"]} for v in votes])
        else:
            vote_labels = [label] if label is not None else []
            votes_out.append(None)
        if label is not None and label not in LABELS:
            raise ContractError(source, f"label {label!r} is not one of {list(LABELS)}",
                                row=index, field="human_label")
        if label is None and (require_labels or pool):
            raise ContractError(source, "no human label (give human_label or human_votes)",
                                row=index, field="human_label")
        labels.append(label)
        for key in counts:
            counts[key].append(sum(v == key for v in vote_labels))

    columns = {
        "id": table.column("id"),
        "instruction": table.column("instruction"),
        "response_a": table.column("response_a"),
        "response_b": table.column("response_b"),
        "human_votes": pa.array(votes_out, type=pa.list_(VOTE_TYPE)),
        "human_label": pa.array(labels, type=pa.string()),
        "split": _optional_string(table, "split", source),
        "group": _optional_string(table, "group", source),
    }
    schema = POOL_SCHEMA if pool else COMPARISON_SCHEMA
    if pool:
        columns["annotator"] = table.column("annotator")
    out = pa.table({name: columns[name] for name in schema.names}, schema=schema)
    return out.append_column("votes_a", pa.array(counts["a"], pa.int32())) \
              .append_column("votes_b", pa.array(counts["b"], pa.int32())) \
              .append_column("votes_tie", pa.array(counts["tie"], pa.int32()))


def _optional_string(table: pa.Table, name: str, source: str) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    column = table.column(name)
    if not pa.types.is_string(column.type) and not pa.types.is_null(column.type):
        try:
            column = pc.cast(column, pa.string())
        except pa.ArrowInvalid as error:
            raise ContractError(source, f"cannot be read as text: {error}", field=name) from error
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def check_pool_disjoint(pool: pa.Table, others: pa.Table, pool_source: str, other_source: str) -> None:
    """Refuse any few-shot pool id that also appears in calibration / training / test data."""
    pool_ids = set(pool.column("id").to_pylist())
    for index, value in enumerate(others.column("id").to_pylist()):
        if value in pool_ids:
            raise ContractError(other_source, f"id {value!r} is also in the few-shot pool "
                                f"{pool_source}; the pool must be disjoint from evaluated data",
                                row=index, field="id", hint="remove it from one of the two files")


def validate_annotations(table: pa.Table, source: str = "<annotations>") -> tuple[pa.Table, RunLayout]:
    """Check an annotation table and return it with its run layout.

    Raises
    ------
    ContractError
        Missing column or layout, duplicate (id, judge), a run vector of the wrong length,
        a probability outside [0, 1], a status that does not match its probability.
    """
    if table.num_rows == 0:
        raise ContractError(source, "the table has no rows")
    _require_columns(table, ANNOTATION_REQUIRED, source)
    layout = layout_of(table, source)
    table = _normalise_ids(table)
    # pred is null only when no run of the item could be read (the item is then never accepted)
    _check_strings(table, "pred", source, allowed=PREDICTIONS, nullable=True)
    keys: dict[tuple, int] = {}
    ids, judges = table.column("id").to_pylist(), table.column("judge").to_pylist()
    for index, key in enumerate(zip(ids, judges)):
        if key in keys:
            raise ContractError(source, f"duplicate (id, judge) {key!r} (first in row {keys[key]})",
                                row=index, field="id")
        keys[key] = index
    probs, status = table.column("probs").to_pylist(), table.column("status").to_pylist()
    for index in range(table.num_rows):
        row_probs, row_status = probs[index], status[index]
        if row_probs is None or len(row_probs) != layout.n_runs:
            raise ContractError(source, f"expected {layout.n_runs} runs {layout.shape}, got "
                                f"{None if row_probs is None else len(row_probs)}", row=index, field="probs")
        if row_status is None or len(row_status) != layout.n_runs:
            raise ContractError(source, "status must have one entry per run", row=index, field="status")
        for value, state in zip(row_probs, row_status):
            missing = value is None or math.isnan(value)
            if not missing and not 0.0 <= value <= 1.0:
                raise ContractError(source, f"probability {value} outside [0, 1]", row=index, field="probs")
            if missing != (state != RUN_STATUS_OK):
                raise ContractError(source, f"run status {state!r} does not match probability {value}",
                                    row=index, field="status")
    if "human_label" in table.column_names:
        _check_strings(table, "human_label", source, allowed=LABELS, nullable=True)
    return table, layout


def validate_scores(table: pa.Table, confidence_column: str, source: str = "<scores>",
                    *, min_rows: int = 1) -> pa.Table:
    """Check a scored table for calibration: confidence in [0, 1], verdicts, human labels.

    Raises
    ------
    ContractError
        Missing column, duplicate id, NaN or out-of-range confidence, a verdict outside {a, b},
        a label outside {a, b, tie}, fewer than ``min_rows`` rows.
    """
    if table.num_rows == 0:
        raise ContractError(source, "the table has no rows")
    _require_columns(table, SCORES_REQUIRED + (confidence_column,), source)
    table = _normalise_ids(table)
    _check_strings(table, "id", source)
    _check_unique_ids(table, source)
    _check_strings(table, "pred", source, allowed=PREDICTIONS)
    _check_strings(table, "human_label", source, allowed=LABELS)
    column = table.column(confidence_column)
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        raise ContractError(source, f"confidence must be numeric, got {column.type}",
                            field=confidence_column)
    values = column.to_numpy(zero_copy_only=False).astype(float)
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0) | (values > 1))
    if bad.size:
        index = int(bad[0])
        raise ContractError(source, f"confidence {values[index]} is not a number in [0, 1]",
                            row=index, field=confidence_column)
    if table.num_rows < min_rows:
        raise ContractError(source, f"{table.num_rows} rows, fewer than the {min_rows} needed",
                            hint="label more items or lower the minimum")
    return table


# ---------------------------------------------------------------------------------------------
# Certificate
# ---------------------------------------------------------------------------------------------

ASSUMPTIONS = (
    "The calibration items and the items the judge is applied to are exchangeable draws from "
    "the same distribution (the calibration set is representative of deployment).",
    "Agreement is with the humans who labelled the calibration set, under the stated label "
    "and tie policies; it says nothing about other annotators or about correctness.",
    "The threshold grid was fixed without looking at the calibration scores.",
    "The guarantee holds with probability 1 - delta over the draw of the calibration set; "
    "it is a statement about the selection rule, not about any single verdict.",
)


@dataclass
class Certificate:
    """A calibrated selective judge: everything needed to check, reproduce and apply it.

    ``stages`` holds one record per judge in a cascade (one for a single judge): its name,
    confidence measure, threshold (``inf``: nothing accepted), n, k, upper bound, coverage and
    the δ it was given.
    """

    alpha: float
    delta: float
    procedure: str
    tie_policy: str
    grid: dict
    stages: list[dict]
    delta_split: str
    coverage: float
    n_calibration: int
    agreement_on_accepted: float | None
    data_hash: str
    model_hash: str | None = None
    assumptions: list[str] = field(default_factory=lambda: list(ASSUMPTIONS))
    created_by: str = "marc_ray"
    version: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return _json_safe(asdict(self))

    def write(self, path: str | os.PathLike) -> None:
        write_json_atomic(self.to_dict(), path)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "Certificate":
        source = os.fspath(path)
        try:
            with open(source, encoding="utf-8") as stream:
                data = json.load(stream)
        except FileNotFoundError as error:
            raise ContractError(source, "no such file") from error
        except json.JSONDecodeError as error:
            raise ContractError(source, f"malformed JSON: {error.msg}") from error
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: dict, source: str = "<certificate>") -> "Certificate":
        names = {f.name for f in cls.__dataclass_fields__.values()}
        required = {"alpha", "delta", "procedure", "grid", "stages", "coverage", "data_hash"}
        for name in sorted(required):
            if name not in data:
                raise ContractError(source, "missing key", field=name)
        unknown = sorted(set(data) - names)
        if unknown:
            raise ContractError(source, f"unknown keys {unknown}", field=unknown[0])
        for name in ("alpha", "delta"):
            value = data[name]
            if not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ContractError(source, f"must be in (0, 1), got {value!r}", field=name)
        for index, stage in enumerate(data["stages"]):
            if "threshold" in stage and isinstance(stage["threshold"], str):
                stage["threshold"] = float(stage["threshold"])
            for key in ("name", "confidence", "threshold"):
                if key not in stage:
                    raise ContractError(source, f"stage {index} lacks '{key}'", field="stages")
        return cls(**{k: v for k, v in data.items() if k in names})


def threshold_from_json(value: Any) -> float:
    """Thresholds are written as numbers or the string "inf" (nothing accepted)."""
    return float(value)
