import os

import numpy as np
import pytest

from marc_ray.contracts import ContractError, layout_of, read_table, validate_scores
from marc_ray.fit import FitConfig, fit_confidence_model, score_annotations
from marc_ray.fit.synthetic import all_subsets_layout, trap_annotations


def test_score_adds_both_learned_columns_atomically(trap_table, tmp_path):
    path = tmp_path / "ann.parquet"
    import pyarrow.parquet as pq

    pq.write_table(trap_table, path)
    for variant in ("marc", "vanilla"):
        fit_confidence_model(path, FitConfig(variant=variant, epochs=2, n_pairs=500)).save(tmp_path / variant)
    out = tmp_path / "scored.parquet"
    score_annotations([tmp_path / "marc", tmp_path / "vanilla"], path, out)
    scored = read_table(out)
    assert layout_of(scored) == layout_of(trap_table)            # run layout kept in the metadata
    for column in ("conf_marc", "conf_vanilla"):
        values = np.asarray(scored.column(column))
        assert values.shape == (trap_table.num_rows,) and ((values > 0) & (values < 1)).all()
        validate_scores(scored, column)
    assert sorted(os.listdir(tmp_path)) == ["ann.parquet", "marc", "scored.parquet", "vanilla"]


def test_scoring_a_file_of_another_layout_fails_clearly(trap_table, tmp_path):
    fit_confidence_model(trap_table, FitConfig(epochs=1, n_pairs=250)).save(tmp_path / "m")
    import pyarrow.parquet as pq

    pq.write_table(trap_annotations(4, layout=all_subsets_layout(3, 2), seed=0), tmp_path / "x.parquet")
    with pytest.raises(ContractError, match=r"x.parquet, field 'probs': feature layout mismatch"):
        score_annotations(tmp_path / "m", tmp_path / "x.parquet", tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_loading_something_else_fails_clearly(tmp_path):
    (tmp_path / "config.json").write_text('{"format": "other"}')
    with pytest.raises(ContractError, match="not a marc_ray confidence model"):
        score_annotations(tmp_path, tmp_path / "a.parquet", tmp_path / "o.parquet")
