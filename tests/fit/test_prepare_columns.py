"""fit.data.prepare on a Parquet file reads the scalar columns, then only the training and
validation rows' runs: the arrays, hash and errors equal those of the whole table (issue 11)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marc_ray.contracts import ContractError
from marc_ray.fit import FitConfig
from marc_ray.fit.data import prepare
from marc_ray.fit.synthetic import trap_annotations


@pytest.fixture(scope="module")
def table(small_layout):
    return trap_annotations(400, layout=small_layout, seed=5,
                            splits={"train": 0.4, "calibration": 0.4, "test": 0.2})


def with_ties_and_unlabelled(table: pa.Table) -> pa.Table:
    """Every 7th label a tie and every 11th missing: rows the labels drop, in every batch."""
    labels = table.column("human_label").to_pylist()
    labels = [None if i % 11 == 0 else "tie" if i % 7 == 0 else label
              for i, label in enumerate(labels)]
    return table.set_column(table.column_names.index("human_label"), "human_label",
                            pa.array(labels, pa.string()))


@pytest.mark.parametrize("mode, tie_policy", [("human", "drop"), ("human", "disagree"),
                                              ("simulated", "drop")])
def test_prepare_from_a_file_equals_prepare_from_the_table(table, tmp_path, mode, tie_policy):
    # the file is read batch by batch (one row group each) straight into the feature matrix,
    # and the rows the labels drop are removed from it in place
    table = with_ties_and_unlabelled(table)
    path = tmp_path / "ann.parquet"
    pq.write_table(table, path, row_group_size=50)
    config = FitConfig(label_mode=mode, tie_policy=tie_policy)
    from_file, from_table = prepare(path, config), prepare(table, config)
    assert from_file.data_hash == from_table.data_hash
    for part in ("train", "valid"):
        a, b = getattr(from_file, part), getattr(from_table, part)
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.agree, b.agree)
        np.testing.assert_array_equal(a.soft, b.soft)
        np.testing.assert_array_equal(a.ids, b.ids)
    assert mode == "simulated" or len(from_file.train) < int(
        (np.array(table.column("split").to_pylist()) == "train").sum())  # some were dropped


def test_keep_rows_in_place_equals_indexing():
    from marc_ray.fit.data import _keep_rows

    rng = np.random.default_rng(1)
    matrix = rng.random((1000, 3)).astype(np.float32)
    kept = rng.random(1000) < 0.6
    expected = matrix[kept]
    np.testing.assert_array_equal(_keep_rows(matrix, kept, block=64), expected)


def test_a_bad_training_row_names_the_file_row(table, tmp_path):
    splits = table.column("split").to_pylist()
    row = max(i for i, s in enumerate(splits) if s == "train")
    probs = table.column("probs").to_pylist()
    probs[row][0] = -0.5
    bad = table.set_column(table.column_names.index("probs"), "probs",
                           pa.array(probs, table.schema.field("probs").type))
    pq.write_table(bad, tmp_path / "bad.parquet", row_group_size=50)
    with pytest.raises(ContractError, match=rf"row {row}, field 'probs': probability -0.5"):
        prepare(tmp_path / "bad.parquet", FitConfig())
    with pytest.raises(ContractError, match=rf"row {row}, field 'probs': probability -0.5"):
        prepare(bad, FitConfig())
