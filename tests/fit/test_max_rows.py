"""FitConfig.max_rows_per_set: a training or validation set larger than it is read as a seeded
sample, in proportion to its disagreement cases; the model records the rows it used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from marc_ray.fit import FitConfig
from marc_ray.fit.data import _disagreement_rows, _in_splits, prepare
from marc_ray.fit.synthetic import trap_annotations

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def table(small_layout):
    return trap_annotations(600, layout=small_layout, seed=3,
                            splits={"train": 0.6, "valid": 0.2, "calibration": 0.2})


def _rows(table, split):
    return np.flatnonzero(np.array(table.column("split").to_pylist(), dtype=object) == split)


def test_a_large_set_is_read_as_a_proportional_seeded_sample(table):
    config = FitConfig(max_rows_per_set=200, random_state=4)
    data = prepare(table, config)
    n_train, n_valid = len(_rows(table, "train")), len(_rows(table, "valid"))
    assert n_train > 200 and n_valid <= 200
    assert data.sampled == {"training": (200, n_train)}  # the validation set fits: read whole
    assert len(data.train) == 200 and len(data.valid) == n_valid
    ids = np.array(table.column("id").to_pylist(), dtype=object)
    assert set(data.train.ids) <= set(ids[_rows(table, "train")])  # never another split's rows
    # the disagreement rate is kept: the two kinds drawn in proportion (rounded)
    train = _in_splits(table, ("train",), null=True)
    rate = (_disagreement_rows(table, config) & train).sum() / train.sum()
    assert abs((1 - data.train.agree).sum() - 200 * rate) <= 1
    again = prepare(table, config)
    np.testing.assert_array_equal(again.train.ids, data.train.ids)  # seeded
    np.testing.assert_array_equal(again.train.features, data.train.features)
    other = prepare(table, config.replace(random_state=5))
    assert set(other.train.ids) != set(data.train.ids)
    for every in (None, "all"):  # YAML null, or the flag's word
        whole = prepare(table, FitConfig(max_rows_per_set=every))
        assert len(whole.train) == n_train and whole.sampled == {}


def test_a_file_gives_the_same_sample_as_its_table(table, tmp_path):
    path = tmp_path / "ann.parquet"
    pq.write_table(table, path, row_group_size=64)
    config = FitConfig(max_rows_per_set=50)
    from_file, from_table = prepare(path, config), prepare(table, config)
    assert from_file.sampled == from_table.sampled == {"training": (50, len(_rows(table, "train"))),
                                                       "validation": (50, len(_rows(table, "valid")))}
    for part in ("train", "valid"):
        a, b = getattr(from_file, part), getattr(from_table, part)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.agree, b.agree)


def test_both_kinds_are_kept_however_small_the_cap(table):
    data = prepare(table, FitConfig(max_rows_per_set=4))
    assert sorted(data.train.agree.tolist()) == [0.0, 0.0, 1.0, 1.0]  # two of each: pairable


@pytest.mark.parametrize("value", [0, 3, 2.5, -3, "many"])
def test_a_bad_cap_is_refused(value):
    with pytest.raises(ValueError, match="max_rows_per_set"):
        FitConfig(max_rows_per_set=value)


def test_marc_ray_fit_says_what_it_sampled_and_the_model_records_only_those_rows(table, tmp_path):
    path = tmp_path / "ann.parquet"
    pq.write_table(table, path)
    out = tmp_path / "model"
    result = subprocess.run([sys.executable, "-m", "marc_ray.cli", "fit", str(path), "--out",
                             str(out), "--max-rows-per-set", "80", "--epochs", "2"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    n_train = len(_rows(table, "train"))
    assert f"the training set has {n_train} rows: a seeded sample of 80 was read" in result.stdout
    saved = json.loads((out / "config.json").read_text())
    assert saved["rows_sampled"]["training"] == [80, n_train]
    assert saved["fit_config"]["max_rows_per_set"] == 80
    assert saved["provenance"]["conf_marc: trained"]["count"] == saved["n_train"] <= 80


@pytest.mark.parametrize("flag, expected", [("all", None), ("1000", 1000)])
def test_the_flag_takes_a_count_or_all(flag, expected):
    from marc_ray.cli import build_parser
    from marc_ray.fit.cli import config_from_args

    args = build_parser().parse_args(["fit", "ann.parquet", "--out", "m", "--max-rows-per-set", flag])
    assert config_from_args(args).max_rows_per_set == expected
    assert config_from_args(build_parser().parse_args(["fit", "ann.parquet", "--out", "m"])
                            ).max_rows_per_set == 200_000  # left out: the default
