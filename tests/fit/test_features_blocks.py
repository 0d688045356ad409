"""Features computed block by block equal the one-block result; errors name the table's row."""

import numpy as np
import pyarrow as pa
import pytest

from marc_ray.contracts import ContractError
from marc_ray.fit import features as features_module
from marc_ray.fit.features import build_features
from marc_ray.fit.synthetic import trap_annotations


def test_blocks_equal_one_block(monkeypatch):
    table = trap_annotations(50, seed=3, missing_rate=0.1)
    whole, layout = build_features(table)
    monkeypatch.setattr(features_module, "FEATURE_BLOCK_VALUES", 310 * 7)  # 7 rows a block
    blocks, _ = build_features(table)
    np.testing.assert_array_equal(blocks, whole)
    hidden = np.zeros(310, bool)
    hidden[::3] = True
    masked = build_features(table, hidden_runs=hidden)[0]
    assert (masked[:, :310][:, hidden] == 0).all() and (masked[:, 310:620][:, hidden] == 0).all()
    np.testing.assert_array_equal(masked[:, :310][:, ~hidden], whole[:, :310][:, ~hidden])
    probs = table.column("probs").to_pylist()
    probs[23] = [float("nan")] * 310
    status = table.column("status").to_pylist()
    status[23] = ["missing: gap"] * 310
    broken = table.set_column(table.column_names.index("probs"), "probs",
                              pa.array(probs, table.schema.field("probs").type))
    broken = broken.set_column(table.column_names.index("status"), "status",
                               pa.array(status, table.schema.field("status").type))
    with pytest.raises(ContractError, match=r"row 23, field 'probs': every simulated-annotator run"):
        build_features(broken, source="a.parquet")
