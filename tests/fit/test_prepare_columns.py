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


@pytest.mark.parametrize("mode", ["human", "simulated"])
def test_prepare_from_a_file_equals_prepare_from_the_table(table, tmp_path, mode):
    path = tmp_path / "ann.parquet"
    pq.write_table(table, path, row_group_size=50)
    config = FitConfig(label_mode=mode)
    from_file, from_table = prepare(path, config), prepare(table, config)
    assert from_file.data_hash == from_table.data_hash
    for part in ("train", "valid"):
        a, b = getattr(from_file, part), getattr(from_table, part)
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.agree, b.agree)
        np.testing.assert_array_equal(a.ids, b.ids)


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
