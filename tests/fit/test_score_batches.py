"""Scoring batch by batch (fit.score.score_file) equals scoring the whole table at once, and
calibrating its output equals calibrating the unbatched output (issue 11)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from marc_ray.cli import main
from marc_ray.contracts import ContractError, read_table
from marc_ray.fit import FitConfig, fit_confidence_model
from marc_ray.fit.estimator import MarcConfidence
from marc_ray.fit.score import score_annotations, score_file, score_table
from marc_ray.fit.synthetic import trap_annotations


@pytest.fixture(scope="module")
def scored_pair(tmp_path_factory, small_layout):
    folder = tmp_path_factory.mktemp("batches")
    table = trap_annotations(300, layout=small_layout, seed=3,
                             splits={"train": 0.4, "valid": 0.1, "calibration": 0.5})
    path = folder / "ann.parquet"
    pq.write_table(table, path, row_group_size=64)  # several row groups, as a real file
    for variant in ("marc", "vanilla"):
        fit_confidence_model(path, FitConfig(variant=variant, epochs=1, n_pairs=200)).save(folder / variant)
    models = [MarcConfidence.load(folder / v) for v in ("marc", "vanilla")]
    whole = score_table(models, read_table(path), str(path))
    pq.write_table(whole, folder / "whole.parquet")
    score_file(models, path, folder / "batched.parquet", batch_rows=7)  # 43 batches
    return folder, models, path, whole


def _same_columns(left: pa.Table, right: pa.Table) -> None:
    assert left.schema == right.schema and left.schema.metadata == right.schema.metadata
    for name in left.column_names:
        a, b = left.column(name), right.column(name)
        if pa.types.is_list(a.type):
            assert pc.list_value_length(a).equals(pc.list_value_length(b)), name
            a, b = pc.list_flatten(a), pc.list_flatten(b)
        if pa.types.is_floating(a.type):
            x, y = (np.asarray(c.to_numpy(zero_copy_only=False), dtype=float) for c in (a, b))
            np.testing.assert_array_equal(x, y, err_msg=name)  # NaN equals NaN here
        else:
            assert a.equals(b), name


def test_batched_scores_equal_the_whole_table(scored_pair):
    """Every column bit-identical, the learned confidences included (each forward pass has one
    shape, ``SCORE_BLOCK_ROWS`` rows padded, so a row's rounding does not depend on its batch)."""
    folder, _, _, whole = scored_pair
    _same_columns(read_table(folder / "batched.parquet"), whole)
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp")) == []


def test_one_batch_is_bit_identical_to_the_whole_table(scored_pair, tmp_path):
    folder, models, path, whole = scored_pair
    score_file(models, path, tmp_path / "one.parquet", batch_rows=10_000)
    _same_columns(read_table(tmp_path / "one.parquet"), whole)


def test_score_annotations_returns_the_scalar_columns(scored_pair, tmp_path):
    folder, _, path, whole = scored_pair
    returned = score_annotations([folder / "marc", folder / "vanilla"], path, tmp_path / "s.parquet")
    assert returned.num_rows == whole.num_rows and "probs" not in returned.column_names
    _same_columns(read_table(tmp_path / "s.parquet"), whole)


def test_a_bad_row_in_a_later_batch_names_the_file_row(scored_pair, tmp_path):
    folder, models, path, _ = scored_pair
    table = read_table(path)
    probs = table.column("probs").to_pylist()
    probs[250][3] = 1.5
    bad = table.set_column(table.column_names.index("probs"), "probs",
                           pa.array(probs, table.schema.field("probs").type))
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(ContractError, match=r"row 250, field 'probs': probability 1.5"):
        score_file(models, tmp_path / "bad.parquet", tmp_path / "out.parquet", batch_rows=7)
    assert not (tmp_path / "out.parquet").exists()
    with pytest.raises(ContractError, match=r"row 250, field 'probs': probability 1.5"):
        score_table(models, bad, "bad")  # the same row unbatched


def test_a_duplicate_across_batches_is_refused(scored_pair, tmp_path):
    folder, models, path, _ = scored_pair
    table = read_table(path)
    ids = table.column("id").to_pylist()
    ids[200] = ids[3]
    pq.write_table(table.set_column(0, "id", pa.array(ids)), tmp_path / "dup.parquet")
    with pytest.raises(ContractError, match=r"row 200, field 'id': duplicate \(id, judge\).*first in row 3"):
        score_file(models, tmp_path / "dup.parquet", tmp_path / "out.parquet", batch_rows=7)


def test_calibrating_the_batched_output_equals_the_unbatched(scored_pair, tmp_path):
    folder, _, _, _ = scored_pair
    certificates = []
    for name in ("whole", "batched"):
        out = tmp_path / name
        assert main(["calibrate", str(folder / f"{name}.parquet"), "--confidence-column", "conf_marc",
                     "--alpha", "0.3", "--alpha", "0.4", "--grid-size", "200", "--out", str(out)]) == 0
        record = json.loads((out / "certificate.json").read_text())
        certificates.append({k: v for k, v in record.items() if k not in ("created", "digest", "source")})
    assert certificates[0]["stages"] == certificates[1]["stages"]  # thresholds, bounds, counts


def test_a_row_scores_the_same_bits_alone_or_among_many(scored_pair):
    """score_features across sizes below, at and above one block: the same bits per row."""
    from marc_ray.fit.estimator import SCORE_BLOCK_ROWS

    _, models, _, _ = scored_pair
    model = models[0]
    rng = np.random.default_rng(0)
    features = rng.random((2 * SCORE_BLOCK_ROWS + 37, model.feature_layout_.n_features),
                          dtype=np.float32)
    whole = model.score_features(features)
    for rows in (slice(0, 1), slice(5, 12), slice(100, 100 + SCORE_BLOCK_ROWS),
                 slice(SCORE_BLOCK_ROWS - 3, 2 * SCORE_BLOCK_ROWS + 37)):
        assert np.array_equal(model.score_features(features[rows]), whole[rows]), rows
    assert np.array_equal(model.score_features(features, raw=True)[:9],
                          model.score_features(features[:9], raw=True))


def test_an_object_store_file_is_scored_and_fitted_batch_by_batch(scored_pair, s3_env, monkeypatch):
    # a URI streams like a local file: the same batches, the same scores, the same fit data
    import marc_ray.fit.data as fit_data
    from marc_ray.contracts import write_table_atomic
    from marc_ray.contracts.io import resolve

    folder, models, path, whole = scored_pair
    resolve(f"s3://score-batches?{s3_env}")[0].create_dir("score-batches")
    source = f"s3://score-batches/ann.parquet?{s3_env}"
    out = f"s3://score-batches/scored.parquet?{s3_env}"
    write_table_atomic(pq.read_table(path), source)
    batches = []
    real = fit_data.parquet_batches

    def counted(location, batch_rows, columns=None):
        for batch in real(location, batch_rows, columns):
            batches.append(batch.num_rows)
            yield batch

    monkeypatch.setattr("marc_ray.fit.score.parquet_batches", counted)
    score_file(models, source, out, batch_rows=7)
    assert len(batches) > 40 and max(batches) == 7  # never the whole table at once
    _same_columns(read_table(out), whole)
    config = FitConfig(epochs=1, n_pairs=200)
    local, remote = fit_data.prepare(str(path), config), fit_data.prepare(source, config)
    np.testing.assert_array_equal(local.train.features, remote.train.features)
    assert local.data_hash == remote.data_hash
