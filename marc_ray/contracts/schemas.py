"""Schemas of the tables that cross stage boundaries, the run layout, and their validators.

See the package docstring for what each table holds. Validators return the table in the
contract's schema or raise a :class:`~marc_ray.contracts.errors.ContractError` naming the file,
row and field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ContractError

LABELS = ("a", "b", "tie")  # human labels; a judge predicts only "a" or "b"
PREDICTIONS = ("a", "b")
ORDERS = ("ab", "ba")  # ab: response_a shown first; ba: response_b shown first
TiePolicy = Literal["drop", "disagree"]
TIE_POLICIES: dict[str, str] = {
    "drop": "items whose human label is a tie (or whose votes split evenly) are left out",
    "disagree": "a tie counts as a disagreement with any verdict (conservative)",
}
RUN_STATUS_OK = "ok"


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
    ("model_a", pa.string()),   # optional: which systems wrote response_a / response_b (win rates)
    ("model_b", pa.string()),
])
COMPARISON_REQUIRED = ("id", "instruction", "response_a", "response_b")

POOL_SCHEMA = COMPARISON_SCHEMA.append(pa.field("annotator", pa.string()))
POOL_REQUIRED = COMPARISON_REQUIRED + ("annotator",)

# Columns carried from the comparison into its annotation row.
CARRIED_COLUMNS = ("human_label", "votes_a", "votes_b", "votes_tie", "split", "group")
# Any other scalar comparison column (a language, a dataset, a task) can be carried too when a
# run names it (``AnnotateConfig.carry``, filled from ``calibrate.by``): it is written as text
# after the contract's columns, so a run that carries nothing keeps the annotation schema.

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


def annotation_schema(layout: RunLayout, carry: Sequence[str] = ()) -> pa.Schema:
    """The annotation schema with the run layout stored in the Parquet metadata.

    ``carry`` names extra comparison columns (:func:`extra_carried`) appended as text fields.
    """
    schema = ANNOTATION_SCHEMA
    for name in extra_carried(carry):
        schema = schema.append(pa.field(name, pa.string()))
    return schema.with_metadata({LAYOUT_METADATA_KEY: layout.to_json().encode()})


def extra_carried(carry: Sequence[str]) -> tuple[str, ...]:
    """The names of ``carry`` the contract does not already carry, in order, once each."""
    return tuple(dict.fromkeys(name for name in carry if name not in CARRIED_COLUMNS))


def carried_names(carry: Sequence[str] = ()) -> tuple[str, ...]:
    """Every comparison column an annotation row carries: the contract's, then ``carry``'s."""
    return CARRIED_COLUMNS + extra_carried(carry)


def carry_problem(name) -> str | None:
    """Why ``name`` cannot be carried into annotation rows (None: it can).

    A carried column sits beside the annotation's own columns and the confidence columns the
    fit stage adds (``conf_*``), so it may not take one of their names.
    """
    if not isinstance(name, str) or not name.strip():
        return f"{name!r} is not a column name"
    if name in CARRIED_COLUMNS:
        return None
    if name in ANNOTATION_SCHEMA.names or name.startswith("conf_"):
        return (f"{name!r} is a column the annotation rows already hold (or a confidence "
                "column's name); rename it in the comparisons")
    if name == "human_votes":
        return "'human_votes' is a list of votes, not one value per item"
    return None


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
# Validation
# ---------------------------------------------------------------------------------------------

def _require_columns(table: pa.Table, required: Sequence[str], source: str) -> None:
    for name in required:
        if name not in table.column_names:
            raise ContractError(source, "missing column", field=name,
                                hint=f"columns present: {', '.join(table.column_names)}")


def _check_strings(table: pa.Table, name: str, source: str, allowed: Sequence[str] | None = None,
                   nullable: bool = False) -> None:
    column = table.column(name)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            or pa.types.is_dictionary(column.type)):
        _check_string_rows(column.to_pylist(), name, source, allowed, nullable)
        return
    # vectorised: find the first bad row, then let the row-wise rule word its error
    bad = np.zeros(table.num_rows, dtype=bool)
    if not nullable:
        bad |= column.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if name == "id":
        bad |= pc.fill_null(pc.equal(pc.utf8_trim_whitespace(column), ""), False).to_numpy(
            zero_copy_only=False)
    if allowed is not None:
        bad |= ~pc.fill_null(pc.is_in(column, pa.array(list(allowed), column.type)),
                             True).to_numpy(zero_copy_only=False)
    first = np.flatnonzero(bad)
    if first.size:
        _check_string_rows(table.column(name).slice(int(first[0]), 1).to_pylist(), name, source,
                           allowed, nullable, offset=int(first[0]))


def _check_string_rows(values: list, name: str, source: str, allowed: Sequence[str] | None,
                       nullable: bool, offset: int = 0) -> None:
    for position, value in enumerate(values):
        index = offset + position
        if value is None:
            if nullable:
                continue
            raise ContractError(source, "missing value", row=index, field=name)
        if not isinstance(value, str):
            raise ContractError(source, f"expected text, got {type(value).__name__} {value!r}",
                                row=index, field=name)
        if name == "id" and not value.strip():
            raise ContractError(source, "empty id: every item needs a non-empty, unique id",
                                row=index, field=name)
        if allowed is not None and value not in allowed:
            raise ContractError(source, f"label {value!r} is not one of {list(allowed)}",
                                row=index, field=name)


def _first_duplicate(table: pa.Table, names: Sequence[str]) -> tuple[int, int] | None:
    """(row, first row with the same key) of the first row whose key (``names``) repeats."""
    key = np.zeros(table.num_rows, dtype=np.int64)
    for name in names:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        encoded = pc.dictionary_encode(column).combine_chunks()
        codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        key = key * (len(encoded.dictionary) + 1) + codes + 1
    if not table.num_rows:
        return None
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    repeated = np.ones(table.num_rows, dtype=bool)
    repeated[first] = False
    rows = np.flatnonzero(repeated)
    if not rows.size:
        return None
    row = int(rows[0])
    return row, int(first[inverse.reshape(-1)[row]])


def _check_unique_ids(table: pa.Table, source: str) -> None:
    duplicate = _first_duplicate(table, ["id"])
    if duplicate is not None:
        row, seen = duplicate
        value = table.column("id")[row].as_py()
        raise ContractError(source, f"duplicate id {value!r} (first seen in row {seen})",
                            row=row, field="id")


def _normalise_ids(table: pa.Table) -> pa.Table:
    """Integer ids (common in public files) become strings."""
    column = table.column("id")
    if pa.types.is_integer(column.type):
        table = table.set_column(table.column_names.index("id"), "id", pc.cast(column, pa.string()))
    return table


def validate_comparisons(table: pa.Table, source: str = "<comparisons>", *,
                         require_labels: bool = False, pool: bool = False,
                         carry: Sequence[str] = ()) -> pa.Table:
    """Check a comparison (or few-shot pool) table and return it in the contract's schema.

    ``human_label`` is resolved from ``human_votes`` (majority, see :func:`majority_label`) when
    only votes are given; ``votes_a``/``votes_b``/``votes_tie`` count the votes. Columns named
    in ``carry`` beyond the contract's (:func:`extra_carried`) are kept after those, as text
    (:func:`carried_column`); every other column is dropped.

    Raises
    ------
    ContractError
        Missing column, empty table, duplicate id, empty text, a label outside {a, b, tie},
        a malformed vote, (``require_labels``) an item with no human label, or a carried
        column that is absent or holds a list or record instead of one value.
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
        "model_a": _optional_string(table, "model_a", source),
        "model_b": _optional_string(table, "model_b", source),
    }
    _check_model_names(columns["model_a"], columns["model_b"], source)
    schema = POOL_SCHEMA if pool else COMPARISON_SCHEMA
    if pool:
        columns["annotator"] = table.column("annotator")
    out = pa.table({name: columns[name] for name in schema.names}, schema=schema)
    out = out.append_column("votes_a", pa.array(counts["a"], pa.int32())) \
             .append_column("votes_b", pa.array(counts["b"], pa.int32())) \
             .append_column("votes_tie", pa.array(counts["tie"], pa.int32()))
    for name in extra_carried(carry):
        if name not in out.column_names:  # a contract comparison column (instruction, ...) too
            out = out.append_column(name, carried_column(table, name, source))
    return out


def carried_column(table: pa.Table, name: str, source: str) -> pa.Array:
    """A comparison column to carry into annotation rows, as text (numbers as their digits).

    Raises
    ------
    ContractError
        Naming the field: the name cannot be carried (:func:`carry_problem`), the column is
        absent (listing the columns present), or (naming the row) a value is a list or record.
    """
    problem = carry_problem(name)
    if problem is not None:
        raise ContractError(source, problem, field=str(name))
    if name not in table.column_names:
        raise ContractError(source, "missing column", field=name,
                            hint=f"a carried column (calibrate.by, annotate.carry) must be in "
                            f"the comparisons; columns present: {', '.join(table.column_names)}")
    column = table.column(name).combine_chunks()
    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
            or pa.types.is_floating(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind)):
        valid = np.flatnonzero(column.is_valid().to_numpy(zero_copy_only=False))
        row = int(valid[0]) if valid.size else 0
        raise ContractError(source, f"expected one value per item (text or a number), got "
                            f"{kind} {column[row].as_py()!r}", row=row, field=name,
                            hint="a carried column (calibrate.by) holds one value per comparison")
    return pc.cast(column, pa.string())


def check_present(table: pa.Table, name: str, source: str, rows=None, why: str = "") -> None:
    """Refuse a null or empty value of ``name`` on ``rows`` (a boolean mask; all rows if None),
    naming the first such row; ``why`` says which rows need a value (e.g. "calibration")."""
    _require_columns(table, [name], source)
    column = pc.cast(table.column(name), pa.string())
    empty = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(column), ""), True)
    bad = empty.to_numpy(zero_copy_only=False)
    if rows is not None:
        bad = bad & np.asarray(rows, dtype=bool)
    first = np.flatnonzero(bad)
    if first.size:
        value = table.column(name)[int(first[0])].as_py()
        raise ContractError(source, f"{'missing' if value is None else 'empty'} value"
                            + (f" on a {why} row" if why else ""), row=int(first[0]), field=name,
                            hint=f"every {why + ' ' if why else ''}item needs a {name}")


def _check_model_names(model_a: pa.Array, model_b: pa.Array, source: str) -> None:
    """Both models are named or neither: a win rate cannot use an item whose other side is unknown."""
    named_a = model_a.is_valid().to_numpy(zero_copy_only=False)
    named_b = model_b.is_valid().to_numpy(zero_copy_only=False)
    one_sided = np.flatnonzero(named_a != named_b)
    if one_sided.size:
        row = int(one_sided[0])
        field = "model_b" if named_a[row] else "model_a"
        raise ContractError(source, "a model is named on one side only", row=row, field=field,
                            hint="give both model_a and model_b, or neither")


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
    check_annotation_keys(table, source)
    check_runs(table, layout, source)
    if "human_label" in table.column_names:
        _check_strings(table, "human_label", source, allowed=LABELS, nullable=True)
    return table, layout


def check_annotation_keys(table: pa.Table, source: str) -> None:
    """Refuse a repeated (id, judge) pair, naming its row and the first row with it."""
    duplicate = _first_duplicate(table, ["id", "judge"])
    if duplicate is not None:
        row, seen = duplicate
        key = (table.column("id")[row].as_py(), table.column("judge")[row].as_py())
        raise ContractError(source, f"duplicate (id, judge) {key!r} (first in row {seen})",
                            row=row, field="id")


RUN_CHECK_ROWS = 1 << 15  # rows per block of the vectorised run check (~10M run values at 310)


def check_runs(table: pa.Table, layout: RunLayout, source: str, row_offset: int = 0) -> None:
    """Every row has one probability and one status per run, probabilities in [0, 1] or NaN,
    and a status that says ``"ok"`` exactly where the probability is present.

    Vectorised over blocks of rows (``pc.list_value_length``, ``pc.list_flatten``): the first
    bad row is found with numpy, then :func:`_check_run_row` words its error, so the error is
    the one a row-by-row check would raise first. ``row_offset`` is added to the rows named.
    """
    n_runs = layout.n_runs
    for lo in range(0, table.num_rows, RUN_CHECK_ROWS):
        block = table.slice(lo, RUN_CHECK_ROWS)
        probs, status = block.column("probs"), block.column("status")
        bad_length = np.zeros(block.num_rows, dtype=bool)
        for column in (probs, status):
            lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
            bad_length |= pc.is_null(column).to_numpy(zero_copy_only=False)
            bad_length |= np.nan_to_num(lengths.astype(float), nan=-1.0) != n_runs
        length_rows = np.flatnonzero(bad_length)
        n_good = int(length_rows[0]) if length_rows.size else block.num_rows
        # rows before the first bad length: probs and status flatten to aligned (n_good, n_runs)
        bad_row = n_good if length_rows.size else None
        if n_good:
            values = pc.list_flatten(probs.slice(0, n_good)).to_numpy(zero_copy_only=False)
            values = values.astype(np.float32, copy=False).reshape(n_good, n_runs)
            ok = pc.fill_null(pc.equal(pc.list_flatten(status.slice(0, n_good)), RUN_STATUS_OK),
                              False).to_numpy(zero_copy_only=False).reshape(n_good, n_runs)
            missing = np.isnan(values)
            with np.errstate(invalid="ignore"):
                bad = (~missing & ((values < 0.0) | (values > 1.0))) | (missing == ok)
            value_rows = np.flatnonzero(bad.any(axis=1))
            if value_rows.size:
                bad_row = int(value_rows[0])
        if bad_row is not None:
            _check_run_row(block.column("probs")[bad_row].as_py(),
                           block.column("status")[bad_row].as_py(), layout, source,
                           row_offset + lo + bad_row)


def _check_run_row(row_probs, row_status, layout: RunLayout, source: str, index: int) -> None:
    """The row-wise rule for one row's runs (words the error :func:`check_runs` found)."""
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


def validate_scores(table: pa.Table, confidence_column: str, source: str = "<scores>",
                    *, min_rows: int = 1, labels: bool = True) -> pa.Table:
    """Check a scored table for calibration: confidence in [0, 1], verdicts, human labels.

    A null ``pred`` means the judge gave no verdict on that item (every run unreadable): the
    item is never accepted, and its confidence may be null or NaN.

    Raises
    ------
    ContractError
        Missing column, duplicate id, NaN or out-of-range confidence on an item with a verdict,
        a verdict outside {a, b}, a label outside {a, b, tie}, fewer than ``min_rows`` rows.
    """
    if table.num_rows == 0:
        raise ContractError(source, "the table has no rows")
    _require_columns(table, (SCORES_REQUIRED if labels else ("id", "pred")) + (confidence_column,),
                     source)  # labels=False: apply's new items need no human label
    table = _normalise_ids(table)
    _check_strings(table, "id", source)
    _check_unique_ids(table, source)
    _check_strings(table, "pred", source, allowed=PREDICTIONS, nullable=True)
    if labels:
        _check_strings(table, "human_label", source, allowed=LABELS)
    column = table.column(confidence_column)
    if pa.types.is_boolean(column.type):
        raise ContractError(source, "confidence is boolean (true/false), not a number in [0, 1]",
                            field=confidence_column)
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)
            or pa.types.is_null(column.type)):
        raise ContractError(source, f"confidence must be numeric, got {column.type}",
                            field=confidence_column)
    values = column.to_numpy(zero_copy_only=False).astype(float)
    has_verdict = table.column("pred").is_valid().to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(has_verdict & (~np.isfinite(values) | (values < 0) | (values > 1)))
    if bad.size:
        index = int(bad[0])
        raise ContractError(source, f"confidence {values[index]} is not a number in [0, 1]",
                            row=index, field=confidence_column)
    if table.num_rows < min_rows:
        raise ContractError(source, f"{table.num_rows} rows, fewer than the {min_rows} needed",
                            hint="label more items or lower the minimum")
    return table
