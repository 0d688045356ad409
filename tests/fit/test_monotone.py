"""The readable confidence: a strictly increasing map to an estimated agreement probability."""

import json

import numpy as np
import pytest

from marc_ray.calibrate import SelectiveCalibrator, ThresholdGrid, quantile_grid
from marc_ray.fit import FitConfig, MarcConfidence
from marc_ray.fit.data import prepare
from marc_ray.fit.monotone import AgreementMap


def test_the_map_is_strictly_increasing_and_estimates_agreement():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.01, 0.99, 4000)
    true_agreement = 1 / (1 + np.exp(-(2.0 * np.log(scores / (1 - scores)) + 0.5)))
    agree = rng.random(scores.size) < true_agreement
    mapping = AgreementMap().fit(scores, agree)
    grid = np.sort(np.concatenate([rng.uniform(0, 1, 5000), [0.0, 1e-9, 0.999999, 1.0]]))
    mapped = mapping.transform(grid)
    assert np.all(np.diff(mapped[(grid > 1e-8) & (grid < 1 - 1e-8)]) > 0)
    assert np.all((mapped >= 0) & (mapped <= 1))
    # it recovers the generating map (a logistic in the logit) and the observed rate
    assert mapping.slope_ == pytest.approx(2.0, rel=0.15)
    assert mapping.intercept_ == pytest.approx(0.5, abs=0.15)
    assert mapping.transform(scores).mean() == pytest.approx(agree.mean(), abs=0.01)
    assert AgreementMap.from_dict(json.loads(json.dumps(mapping.to_dict()))).transform(grid) \
        == pytest.approx(mapped, abs=0, rel=0)


def test_the_map_stays_increasing_when_validation_items_separate_or_invert():
    scores = np.linspace(0.1, 0.9, 40)
    separated = AgreementMap().fit(scores, scores > 0.5)  # perfectly separated: finite fit
    assert np.isfinite(separated.slope_) and separated.slope_ > 0
    inverted = AgreementMap().fit(scores, scores < 0.5)  # the score ranks the wrong way
    assert inverted.slope_ > 0  # still strictly increasing: the map never reorders items
    assert np.all(np.diff(inverted.transform(scores)) > 0)


@pytest.fixture(scope="module")
def fitted(trap_table):
    return MarcConfidence(FitConfig(epochs=6, n_pairs=2000)).fit(trap_table)


def test_certified_set_is_identical_under_a_quantile_grid_mapped_the_same_way(fitted, trap_table):
    config = fitted.config
    data = prepare(trap_table, config)
    raw_train = fitted.score_features(data.train.features, raw=True)
    raw_grid = quantile_grid(raw_train, 100)            # from the training split only
    mapped_grid = ThresholdGrid(fitted.agreement_map_.transform(np.asarray(raw_grid)),
                                kind="quantile")
    split = np.asarray(trap_table.column("split").to_pylist())
    calibration = trap_table.filter(split == "test")
    pred = calibration.column("pred").to_pylist()
    human = calibration.column("human_label").to_pylist()
    raw = fitted.score(calibration, raw=True)
    mapped = fitted.score(calibration)
    assert np.array_equal(np.argsort(raw, kind="stable"), np.argsort(mapped, kind="stable"))
    alphas = [0.1, 0.15, 0.2, 0.3]
    before = SelectiveCalibrator(alpha=alphas, grid=raw_grid, min_n=20).calibrate(raw, pred, human)
    after = SelectiveCalibrator(alpha=alphas, grid=mapped_grid, min_n=20).calibrate(mapped, pred, human)
    assert np.array_equal(before.n_, after.n_) and np.array_equal(before.k_, after.k_)
    assert np.array_equal(before.coverage_, after.coverage_)
    for alpha in alphas:
        assert np.array_equal(before.accept(raw, alpha), after.accept(mapped, alpha))
    assert any(before.accept(raw, a).any() for a in alphas)  # something was certified


def test_the_mapped_score_reads_as_agreement_and_survives_save_load(fitted, trap_table, tmp_path):
    assert fitted.agreement_map_.fitted_on_ == "valid" and fitted.agreement_map_.n_fit_ >= 30
    split = np.asarray(trap_table.column("split").to_pylist())
    valid = trap_table.filter(split == "valid")
    data = prepare(trap_table, fitted.config)
    mapped = fitted.score_features(data.valid.features)
    assert mapped.mean() == pytest.approx(data.valid.agree.mean(), abs=2e-3)
    fitted.save(tmp_path / "m")
    loaded = MarcConfidence.load(tmp_path / "m")
    assert np.array_equal(loaded.score(valid), fitted.score(valid))
    assert np.array_equal(loaded.score(valid, raw=True), fitted.score(valid, raw=True))
