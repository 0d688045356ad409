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


def test_rows_without_a_verdict_get_nan(trap_table):
    """The one scoring rule (score CLI, pipeline, apply): no verdict → NaN, the row stays."""
    import pyarrow as pa

    from marc_ray.fit.score import score_table

    model = fit_confidence_model(trap_table, FitConfig(epochs=1, n_pairs=250))
    pred = trap_table.column("pred").to_pylist()
    pred[0] = pred[3] = None
    silent = trap_table.set_column(trap_table.column_names.index("pred"), "pred",
                                   pa.array(pred, trap_table.schema.field("pred").type))
    values = np.asarray(score_table([model], silent).column("conf_marc"))
    assert np.isnan(values[[0, 3]]).all() and np.isfinite(np.delete(values, [0, 3])).all()
    keep = np.ones(len(pred), dtype=bool)
    keep[[0, 3]] = False
    assert values[keep] == pytest.approx(model.score(trap_table.filter(pa.array(keep))))
    assert score_table([], silent) is silent  # no model: the table as it is
