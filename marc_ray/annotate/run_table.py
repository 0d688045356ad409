"""Reading a replay judge's run table: every accepted shape → one canonical run table, in batches.

The replay engine (:mod:`marc_ray.annotate.replay`) reads judge outputs computed elsewhere.
They arrive in one of these shapes (file: Parquet file or folder, JSONL, or JSON; or a table):

*runs* (the canonical shape)
    ``id``; ``annotator`` (or ``run``: the simulated annotator's name); ``order`` ("ab":
    response_a shown first, "ba": response_b shown first); optional ``subset`` (comma-separated
    0-based shot indices such as "0,2"; "0" when absent); exactly one value column,
    ``p_response_a`` (P(response_a better), already mapped back from the order shown; null =
    missing run; NaN is refused as 1.5 is) or ``verdict`` ("a", "b", "tie"; null = unusable);
    optional ``raw`` (the judge's original answer, kept in the status of a missing run).
*verdicts* (``marc-ray datasets export NAME FILE --verdicts``, as is)
    ``id``, ``judge``, ``variant``, ``order``, ``verdict``, ``raw``: each (judge, prompt variant)
    is one simulated annotator, named "judge/variant".
*one judge* (one judge's outputs in both orders)
    ``id``, ``order`` and ``p_response_a`` or ``verdict``, no annotator column: the runs are one
    annotator named after the judge, which is also the zero-shot annotator (its predictive
    probability is the mean of its two orders).
*OpenAI-compatible outputs* (JSONL)
    one answer per line, with top log-probabilities at the answer token, read exactly as the
    HTTP engine reads a live answer (:func:`marc_ray.annotate.http_engine.answer_top_logprobs`
    and :func:`~marc_ray.annotate.http_engine.choice_from_top_logprobs`): either a batch job's
    output line (``custom_id`` = "ID::ORDER" or "ID::ANNOTATOR::ORDER", ``response.body`` the
    completion or chat completion), or a saved answer with ``id``, ``order``, optional
    ``annotator`` / ``subset``, and ``response`` (the answer as the server sent it). The labels
    of the first- and second-shown response are the judge's ``labels`` ("A", "B" by default).

Anything else is refused with a :class:`~marc_ray.contracts.ContractError` naming the file, the
row (where there is one) and the columns each shape expects. :class:`RunBatches` yields the
canonical columns batch by batch (a Parquet file is never read whole), so the replay engine
sees one shape.
"""

from __future__ import annotations

import json
import math
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pa_dataset

from ..contracts import ContractError, read_table
from ..contracts.io import read_text
from ..contracts.provenance import id_hashes
from .config import AnnotateConfig

VERDICT_PROBABILITY = {"a": 1.0, "b": 0.0, "tie": 0.5}  # P(response_a better) of a verdict
DEFAULT_SUBSET = "0"
BATCH_ROWS = 1 << 18  # run rows per scanned batch (its temporaries are the transient memory)
DICTIONARY_COLUMNS = ("id", "annotator", "run", "judge", "variant", "subset", "order", "verdict")
LINE_FORMATS = (".jsonl", ".json", ".ndjson")
OPENAI_KEYS = ("custom_id", "response", "choices")  # a JSON line with one of them is an answer
CUSTOM_ID_SEPARATOR = "::"
NOT_RUN, OK, NO_PROBABILITY, UNUSABLE, RAW = 0, 1, 2, 3, 255  # status codes of a run
STATUS_TEXT = ["missing: not run", "ok", "missing: no probability", "missing: unusable verdict"]

SHAPES = {  # what the refusal of an unknown table lists
    "runs": "id, annotator (or run), order, [subset], p_response_a or verdict, [raw]",
    "verdicts": "id, judge, variant, order, verdict, raw (marc-ray datasets export --verdicts)",
    "one judge": "id, order, p_response_a or verdict (one judge, both orders)",
    "openai": "JSONL of OpenAI-compatible answers with top logprobs: custom_id 'ID::ORDER' and "
              "response.body (batch output), or id, order, response (saved answers)",
}


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
    """The simulated annotator of one (judge, prompt variant) of a verdict table."""
    return f"{judge}/{variant}"


def refuse_shape(source: str, names: Sequence[str], row: int | None = None) -> None:
    """The one refusal of a table that is none of the accepted shapes."""
    expected = "; ".join(f"{name}: {columns}" for name, columns in SHAPES.items())
    raise ContractError(source, f"not a run table (columns present: {', '.join(names) or 'none'})",
                        row=row, hint=f"expected one of these shapes: {expected}")


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible answers → canonical rows
# ---------------------------------------------------------------------------------------------

def is_openai_line(record: dict) -> bool:
    return any(key in record for key in OPENAI_KEYS)


def openai_runs(text: str, source: str, labels: tuple[str, str]) -> pa.Table:
    """JSON lines of OpenAI-compatible answers → a canonical run table (``p_response_a``, ``raw``).

    A line whose request failed (a batch ``error``, a status code other than 200, no top
    log-probabilities, neither label among them) is a missing run whose ``raw`` says why.
    """
    from .http_engine import answer_top_logprobs, choice_from_top_logprobs

    rows = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row = len(rows)
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ContractError(source, f"malformed JSON line: {error.msg}", row=row,
                                hint=f"line {line_number}") from error
        if not isinstance(record, dict) or not is_openai_line(record):
            refuse_shape(source, sorted(record) if isinstance(record, dict) else [], row=row)
        keys = _openai_keys(record, source, row)
        answer, reason = _openai_answer(record)
        if answer is not None:
            result = choice_from_top_logprobs(answer_top_logprobs(answer), labels)
            p_first, reason = result.p_first, (None if result.status == "ok" else result.status)
        if reason is not None:
            p = None
        else:
            p = p_first if keys["order"] == "ab" else 1.0 - p_first
        rows.append({**keys, "p_response_a": p,
                     "raw": None if reason is None else reason.removeprefix("missing: ")})
    if not rows:
        raise ContractError(source, "the file has no rows")
    schema = pa.schema([("id", pa.string()), ("annotator", pa.string()), ("order", pa.string()),
                        ("subset", pa.string()), ("p_response_a", pa.float64()),
                        ("raw", pa.string())])
    table = pa.Table.from_pylist(rows, schema=schema)
    for name in ("annotator", "subset"):  # never given: one judge's runs, one subset
        if table.column(name).null_count == table.num_rows:
            table = table.drop_columns([name])
    return table


def _openai_keys(record: dict, source: str, row: int) -> dict:
    """The run of an answer line: id, annotator (None: the judge), order, subset."""
    if "custom_id" in record:
        parts = str(record["custom_id"]).split(CUSTOM_ID_SEPARATOR)
        if len(parts) not in (2, 3) or not all(parts):
            raise ContractError(source, f"custom_id {record['custom_id']!r} is not "
                                f"'ID::ORDER' or 'ID::ANNOTATOR::ORDER'", row=row, field="custom_id")
        item, annotator, order = parts[0], (parts[1] if len(parts) == 3 else None), parts[-1]
        subset = None
    else:
        for name in ("id", "order"):
            if not isinstance(record.get(name), str) or not record[name]:
                raise ContractError(source, "missing key", row=row, field=name,
                                    hint="a saved answer carries id, order (ab / ba), optional "
                                         "annotator and subset, and response")
        item, annotator, order = record["id"], record.get("annotator"), record["order"]
        subset = record.get("subset")
    if order not in ("ab", "ba"):
        raise ContractError(source, f"order {order!r} is not one of ['ab', 'ba']", row=row,
                            field="custom_id" if "custom_id" in record else "order")
    return {"id": item, "annotator": annotator, "order": order,
            "subset": None if subset is None else str(subset)}


def _openai_answer(record: dict) -> tuple[dict | None, str | None]:
    """(the completion or chat completion, None) or (None, why the run is missing)."""
    if record.get("error"):
        return None, f"the request failed: {str(record['error'])[:200]}"
    answer = record.get("response", record)
    if isinstance(answer, dict) and "body" in answer:  # a batch job's output line
        status = answer.get("status_code", 200)
        if status != 200:
            return None, f"the request failed with HTTP {status}"
        answer = answer["body"]
    if not isinstance(answer, dict):
        return None, "the server returned no top log-probabilities"
    return answer, None


# ---------------------------------------------------------------------------------------------
# Any shape → canonical batches
# ---------------------------------------------------------------------------------------------

class RunBatches:
    """A run table of any accepted shape as canonical record batches in file order, each with the
    row offset of its first row (``__call__``).

    ``names`` are the canonical columns present: ``id``, ``annotator``, ``order``, ``subset``
    (when given), the value column, ``raw`` (when given). ``zero_shot`` is the annotator a shape
    itself makes the zero-shot one (the *one judge* shape), else None.
    """

    def __init__(self, runs: pa.Table | str, source: str, *, judge: str = "judge",
                 labels: tuple[str, str] = AnnotateConfig.labels):
        self.source, self.judge = source, judge
        self.table, self.dataset = None, None
        if isinstance(runs, pa.Table):
            self.table = runs
        elif str(runs).lower().rstrip("/").endswith(LINE_FORMATS):
            self.table = self._line_table(str(runs), labels)
        else:
            try:
                # text columns decoded as dictionaries: a batch holds small indices, and the
                # replay's lookups run once per distinct value, not once per row
                parquet = pa_dataset.ParquetFileFormat(read_options=pa_dataset.ParquetReadOptions(
                    dictionary_columns=list(DICTIONARY_COLUMNS)))
                self.dataset = pa_dataset.dataset(runs, format=parquet)
            except (pa.ArrowInvalid, OSError, FileNotFoundError) as error:
                read_table(runs)  # raises the contract's error (missing file, bad format)
                raise ContractError(source, f"not a readable Parquet file or folder: {error}") from error
        self.schema = self.table.schema if self.table is not None else self.dataset.schema
        self.shape, self.names, self.zero_shot = self._recognise(self.schema.names)
        if (self.table.num_rows if self.table is not None else self.dataset.count_rows()) == 0:
            raise ContractError(source, "the run table has no rows")

    def _line_table(self, path: str, labels: tuple[str, str]) -> pa.Table:
        text = read_text(path)
        first = next((line for line in text.splitlines() if line.strip()), "")
        try:
            record = json.loads(first)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and is_openai_line(record):
            return openai_runs(text, self.source, labels)
        return read_table(path)  # line formats are small; read_table names the line

    def _recognise(self, present: Sequence[str]) -> tuple[str, list[str], str | None]:
        present = set(present)
        values = [name for name in ("p_response_a", "verdict") if name in present]
        if "id" not in present or "order" not in present:
            refuse_shape(self.source, sorted(present))
        optional = [name for name in ("subset", "raw") if name in present]
        if {"judge", "variant"} <= present and values == ["verdict"]:
            return "verdicts", ["id", "annotator", "order", "verdict"] + optional, None
        if "annotator" in present or "run" in present:
            if "annotator" in present and "run" in present:
                raise ContractError(self.source, "give the annotator in one column", field="run",
                                    hint="annotator and run are two names for the same column")
            if len(values) != 1:
                raise ContractError(self.source, "give exactly one value column",
                                    field="p_response_a",
                                    hint="p_response_a (probabilities) or verdict (a / b / tie)")
            return "runs", ["id", "annotator", "order"] + values + optional, None
        if len(values) == 1 and not present & {"judge", "variant"}:
            return "one judge", ["id", "annotator", "order"] + values + optional, self.judge
        refuse_shape(self.source, sorted(present))

    def type_of(self, name: str) -> pa.DataType:
        return self.schema.field(name).type

    def _read_columns(self, columns: Sequence[str]) -> list[str]:
        """The stored columns behind canonical ``columns``."""
        out = []
        for name in columns:
            if name == "annotator" and self.shape == "verdicts":
                out += ["judge", "variant"]
            elif name == "annotator" and self.shape == "one judge":
                continue
            elif name == "annotator" and "run" in self.schema.names:
                out.append("run")
            elif name in self.schema.names:
                out.append(name)
        return out

    def _canonical(self, batch: pa.RecordBatch, columns: Sequence[str]) -> pa.RecordBatch:
        arrays, names = [], []
        for name in columns:
            if name not in self.names:
                continue
            if name == "annotator" and self.shape == "verdicts":
                column = pc.binary_join_element_wise(_text(batch.column("judge")),
                                                     _text(batch.column("variant")), "/")
            elif name == "annotator" and self.shape == "one judge":
                column = pa.DictionaryArray.from_arrays(
                    pa.array(np.zeros(batch.num_rows, np.int32)), pa.array([self.judge]))
            elif name == "annotator" and "run" in batch.schema.names:
                column = batch.column("run")
            else:
                column = batch.column(name)
            arrays.append(column)
            names.append(name)
        return pa.RecordBatch.from_arrays(arrays, names=names)

    def __call__(self, columns: Sequence[str]):
        stored = list(dict.fromkeys(self._read_columns(columns)))
        if self.table is not None:
            batches = self.table.select(stored).to_batches(max_chunksize=BATCH_ROWS)
        else:
            # no read-ahead, no pre-buffering: the scan holds one batch, not the file
            batches = self.dataset.to_batches(
                columns=stored, batch_size=BATCH_ROWS, batch_readahead=0, fragment_readahead=0,
                fragment_scan_options=pa_dataset.ParquetFragmentScanOptions(pre_buffer=False))
        offset = 0
        for batch in batches:
            if batch.num_rows:
                yield offset, self._canonical(batch, columns)
            offset += batch.num_rows


# ---------------------------------------------------------------------------------------------
# Column helpers (vectorised; dictionary-encoded text stays encoded)
# ---------------------------------------------------------------------------------------------

def first_true(mask) -> int:
    """Index of the first True of a boolean array (pyarrow or numpy); -1 when none."""
    mask = np.asarray(mask.to_numpy(zero_copy_only=False) if isinstance(mask, (pa.Array, pa.ChunkedArray))
                      else mask, dtype=bool)
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else -1


def _text(column) -> pa.Array:
    """A column as plain strings (dictionary-decoded, numbers as text)."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


as_text = _text  # the public name


def encoded(column) -> tuple[pa.Array, np.ndarray]:
    """(distinct values as text, in first appearance; index of each row's value, -1 for null)."""
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    indices = pc.fill_null(column.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return _text(column.dictionary), indices


def _per_row(values: np.ndarray, indices: np.ndarray, null) -> np.ndarray:
    """``values[index]`` for each row (``null`` where the index is -1)."""
    return np.append(values, null)[indices]


def codes(column, values) -> np.ndarray:
    """Index of each value of ``column`` in ``values`` (-1: not there, or null)."""
    dictionary, indices = encoded(column)
    value_set = values if isinstance(values, pa.Array) else pa.array(list(values), pa.string())
    found = pc.fill_null(pc.index_in(dictionary, value_set=value_set), -1)
    return _per_row(found.to_numpy(zero_copy_only=False).astype(np.int64), indices, -1)


class TextIndex:
    """:func:`codes` against one large, fixed array of texts, hashed once.

    ``pc.index_in`` hashes its whole value set on every call. The replay looks up each batch's
    item ids among every item: once per batch, that is items × batches, quadratic in the data
    (0.10-0.13 s a batch with a million items: 120-160 s of a 1M-item replay's 299,
    ``benchmarks/bench_replay_lookup.py``). Here a batch costs its distinct values only.

    The index holds 16 bytes per value (each value's 64-bit hash, by ``provenance.id_hashes``,
    sorted, and its position), not a Python string per value: a dict of ten million ids would
    take ~2 GB. A hash found is confirmed by comparing the texts, so a collision costs a second
    look, never a wrong answer. The first position wins where ``values`` repeats one.
    """

    def __init__(self, values: pa.Array | pa.ChunkedArray):
        self._values = _text(values.combine_chunks() if isinstance(values, pa.ChunkedArray)
                             else values)
        hashes = self._hashes_of(self._values)
        # stable: among equal hashes the earlier position comes first, so the first one wins
        self._order = np.argsort(hashes, kind="stable")
        self._sorted = hashes[self._order]

    @staticmethod
    def _hashes_of(texts: pa.Array) -> np.ndarray:
        return id_hashes(texts)  # vectorised over the Arrow buffers, chunk by chunk

    def __call__(self, column) -> np.ndarray:
        """Index of each value of ``column`` (-1: not there, or null)."""
        if isinstance(column, pa.ChunkedArray):  # a table's column: one dictionary, not one a chunk
            column = column.combine_chunks()
        dictionary, indices = encoded(column)
        return _per_row(self._find(dictionary), indices, -1)

    def _find(self, texts: pa.Array) -> np.ndarray:
        keys = self._hashes_of(texts)
        found = np.full(len(texts), -1, np.int64)
        pending = np.arange(len(texts))  # the texts not resolved yet
        slot = np.searchsorted(self._sorted, keys)  # each one's next candidate among the hashes
        while pending.size:
            hit = np.zeros(pending.size, dtype=bool)
            inside = slot < len(self._sorted)
            hit[inside] = self._sorted[slot[inside]] == keys[pending[inside]]
            pending, slot = pending[hit], slot[hit]  # the others' hash is not there: -1
            position = self._order[slot]
            same = pc.fill_null(pc.equal(self._values.take(pa.array(position)),
                                         texts.take(pa.array(pending))), False)
            same = same.to_numpy(zero_copy_only=False)
            found[pending[same]] = position[same]
            pending, slot = pending[~same], slot[~same] + 1  # a hash collision: the next equal hash
        return found


def empty(column) -> np.ndarray:
    """Rows whose text is null or empty."""
    dictionary, indices = encoded(column)
    blank = pc.fill_null(pc.equal(dictionary, ""), True).to_numpy(zero_copy_only=False)
    return _per_row(blank, indices, True)


def parse_subset(text, source: str, index: int) -> tuple[int, ...]:
    """A subset's text ("0,2") → sorted shot indices; a ContractError naming the row otherwise."""
    try:
        subset = tuple(sorted(int(part) for part in str(text).split(",")))
    except ValueError as error:
        raise ContractError(source, f"subset {text!r} is not comma-separated shot indices",
                            row=index, field="subset") from error
    if not subset or min(subset) < 0 or len(set(subset)) != len(subset):
        raise ContractError(source, f"subset {text!r} must list distinct shot indices >= 0",
                            row=index, field="subset")
    return subset


# ---------------------------------------------------------------------------------------------
# Values of a batch: probability, status code, raw answer
# ---------------------------------------------------------------------------------------------

def run_values(batch: pa.RecordBatch, value_column: str, offset: int, source: str,
               check: bool) -> tuple[np.ndarray, np.ndarray, pa.Array | None]:
    """P(response_a better) (NaN: missing), status code and, for missing runs with a raw
    answer, the raw text (null elsewhere) of each row of ``batch``.

    A null probability is a missing run; NaN, like 1.5, is refused (``check``): a file that
    holds NaN was written by code that lost track of a run, and the replay cannot tell why.
    """
    column = batch.column(value_column)
    if value_column == "p_response_a":
        values = pc.cast(column, pa.float64()) if not pa.types.is_null(column.type) else \
            pa.nulls(len(column), pa.float64())
        missing = ~pc.is_valid(values).to_numpy(zero_copy_only=False)
        p = pc.fill_null(values, math.nan).to_numpy(zero_copy_only=False)
        if check:
            bad = first_true(~missing & ~((p >= 0.0) & (p <= 1.0)))
            if bad >= 0:
                raise ContractError(source, f"probability {p[bad]} outside [0, 1]",
                                    row=offset + bad, field="p_response_a",
                                    hint="a missing run is null (empty), never NaN")
        code = np.where(missing, NO_PROBABILITY, OK).astype(np.uint8)
    else:
        found = codes(column, list(VERDICT_PROBABILITY))
        if check:
            bad = first_true((found < 0) & pc.is_valid(column).to_numpy(zero_copy_only=False))
            if bad >= 0:
                raise ContractError(source, f"verdict {column[bad].as_py()!r} is not one of "
                                    f"{sorted(VERDICT_PROBABILITY)} (or null: unusable)",
                                    row=offset + bad, field="verdict")
        p = np.append(np.array(list(VERDICT_PROBABILITY.values())), math.nan)[found]
        missing = found < 0
        code = np.where(missing, UNUSABLE, OK).astype(np.uint8)
    raw = None
    if "raw" in batch.schema.names and missing.any():
        rows = np.flatnonzero(missing)  # only the missing runs' answers are read
        raw_text = _text(batch.column("raw").take(pa.array(rows)))
        given = pc.fill_null(pc.not_equal(raw_text, ""), False).to_numpy(zero_copy_only=False)
        if given.any():
            code[rows[given]] = RAW
            raw = pa.nulls(batch.num_rows, pa.string())
            raw = pc.replace_with_mask(raw, pa.array(np.isin(np.arange(batch.num_rows), rows[given])),
                                       raw_text.filter(pa.array(given)))
    return p, code, raw


def raw_reasons(raw: pa.Array, code: int) -> pa.Array:
    """The status of missing runs with a raw answer: repr() of each distinct answer, once."""
    distinct = pc.unique(raw)
    text = "missing: no probability" if code == NO_PROBABILITY else "missing: unusable verdict"
    reasons = pa.array([f"{text} (raw {value!r})" for value in distinct.to_pylist()], pa.string())
    return pc.take(reasons, pc.index_in(raw, value_set=distinct))
