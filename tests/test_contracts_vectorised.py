"""The vectorised annotation checks (contracts.schemas.check_runs, the key and label checks)
raise the same error, row and field as the row-by-row rule they replaced (issue 11)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from marc_ray.contracts import ContractError, validate_annotations
from marc_ray.contracts import schemas
from marc_ray.fit.synthetic import all_subsets_layout, trap_annotations


def reference(table: pa.Table, source: str):
    """The row-by-row check of round 1 (runs, then human labels), for comparison."""
    layout = schemas.layout_of(table, source)
    keys = {}
    for index, key in enumerate(zip(table.column("id").to_pylist(), table.column("judge").to_pylist())):
        if key in keys:
            return ("id", index, f"duplicate (id, judge) {key!r} (first in row {keys[key]})")
        keys[key] = index
    probs, status = table.column("probs").to_pylist(), table.column("status").to_pylist()
    for index in range(table.num_rows):
        p, s = probs[index], status[index]
        if p is None or len(p) != layout.n_runs:
            return ("probs", index, None)
        if s is None or len(s) != layout.n_runs:
            return ("status", index, None)
        for value, state in zip(p, s):
            missing = value is None or math.isnan(value)
            if not missing and not 0.0 <= value <= 1.0:
                return ("probs", index, None)
            if missing != (state != "ok"):
                return ("status", index, None)
    return None


def corrupt(table: pa.Table, rng: np.random.Generator) -> pa.Table:
    probs, status = table.column("probs").to_pylist(), table.column("status").to_pylist()
    ids = table.column("id").to_pylist()
    for _ in range(int(rng.integers(1, 4))):
        row, run = int(rng.integers(len(probs))), int(rng.integers(len(probs[0])))
        kind = rng.integers(7)
        if kind < 4 and (probs[row] is None or status[row] is None or run >= len(probs[row])):
            continue
        if kind == 0:
            probs[row][run] = float(rng.choice([1.5, -0.1]))
        elif kind == 1:
            probs[row][run] = float("nan")          # missing, but status says ok
        elif kind == 2:
            status[row][run] = "missing: x" if status[row][run] == "ok" else "ok"
        elif kind == 3:
            probs[row] = probs[row][:-1]
        elif kind == 4:
            status[row] = None
        elif kind == 5:
            probs[row] = None
        else:
            ids[row] = ids[int(rng.integers(len(ids)))]
    table = table.set_column(0, "id", pa.array(ids))
    table = table.set_column(table.column_names.index("probs"), "probs",
                             pa.array(probs, pa.list_(pa.float32())))
    return table.set_column(table.column_names.index("status"), "status",
                            pa.array(status, pa.list_(pa.string())))


@pytest.mark.parametrize("block_rows", [7, 1 << 15])
def test_vectorised_run_checks_name_the_same_row_and_field(monkeypatch, block_rows):
    monkeypatch.setattr(schemas, "RUN_CHECK_ROWS", block_rows)
    base = trap_annotations(60, layout=all_subsets_layout(2, 2), seed=0)
    rng = np.random.default_rng(1)
    for _ in range(40):
        table = corrupt(base, rng)
        expected = reference(table, "f")
        if expected is None:
            validate_annotations(table, "f")
            continue
        with pytest.raises(ContractError) as caught:
            validate_annotations(table, "f")
        assert (caught.value.field, caught.value.row) == expected[:2], str(caught.value)
        if expected[2]:
            assert expected[2] in str(caught.value)


def test_label_and_verdict_checks_find_the_first_bad_row():
    table = trap_annotations(30, layout=all_subsets_layout(2, 2), seed=0)
    for column, row, value in (("pred", 17, "tie"), ("human_label", 4, "c"), ("pred", 0, "A")):
        values = table.column(column).to_pylist()
        values[row] = value
        values[row + 5] = "zz"
        bad = table.set_column(table.column_names.index(column), column, pa.array(values))
        with pytest.raises(ContractError, match=rf"row {row}, field '{column}': label '{value}'"):
            validate_annotations(bad, "f")
