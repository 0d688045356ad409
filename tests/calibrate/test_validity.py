"""The validity study: equal to a naive loop, right on known cases, group-aware, seeded."""

import numpy as np
import pytest

from marc_ray.calibrate import (SelectiveCalibrator, clopper_pearson_interval, validity_study,
                                validity_study_from_agreement)
from marc_ray.calibrate.validity import draw_calibration_sets


def _file(n_items=3000, seed=0):
    rng = np.random.default_rng(seed)
    confidence = rng.random(n_items)
    agree = rng.random(n_items) >= 0.4 * (1 - confidence)
    return confidence, agree


@pytest.mark.parametrize("design", ["split", "population"])
def test_vectorised_study_equals_naive_loop(design):
    confidence, agree = _file(n_items=1200)
    repetitions, size, seed = 40, 500, 11
    result = validity_study_from_agreement(confidence, agree, 0.1, 0.1, repetitions, design,
                                           calibration_size=size, random_state=seed)
    rows, items = draw_calibration_sets(np.random.default_rng(seed), repetitions, confidence.size,
                                        size, design)
    for repetition in range(repetitions):
        chosen = items[rows == repetition]
        calibrator = SelectiveCalibrator(alpha=0.1, delta=0.1).calibrate_agreement(
            confidence[chosen], agree[chosen])
        assert result.threshold[repetition] == calibrator.threshold_
        if design == "population":
            evaluated = np.ones(confidence.size, dtype=bool)
        else:
            evaluated = np.ones(confidence.size, dtype=bool)
            evaluated[chosen] = False
        accepted = evaluated & (confidence >= calibrator.threshold_)
        observed = agree[accepted].mean() if accepted.any() else np.nan
        assert result.coverage[repetition] == pytest.approx(accepted.sum() / evaluated.sum())
        assert result.success[repetition] == (not accepted.any() or observed >= 0.9 - 1e-12)
        np.testing.assert_allclose(result.agreement[repetition], observed)


def test_population_design_meets_the_guarantee():
    confidence, agree = _file(n_items=5000, seed=1)
    result = validity_study_from_agreement(confidence, agree, 0.1, 0.1, 1000, "population",
                                           calibration_size=1000, random_state=0)
    slack = 3 * np.sqrt(0.1 * 0.9 / 1000)
    assert result.success_rate >= 0.9 - slack
    assert 0.2 < result.mean_coverage < 0.8
    low, high = result.success_interval
    assert (low, high) == pytest.approx(clopper_pearson_interval(int(result.success.sum()), 1000))
    assert low <= result.success_rate <= high
    assert result.n_repetitions == 1000 and result.success.shape == (1000,)


def test_accepting_nothing_counts_as_success():
    confidence, agree = _file(n_items=400, seed=2)
    # 15 calibration items can never certify alpha = 0.1 (22 are needed even with no error)
    result = validity_study_from_agreement(confidence, agree, 0.1, 0.1, 200, "split",
                                           calibration_size=15, random_state=0)
    assert result.success_rate == 1.0 and result.abstention_rate == 1.0
    assert result.mean_coverage == 0.0 and np.all(np.isinf(result.threshold))
    assert np.all(np.isnan(result.agreement))


def test_group_aware_split_keeps_groups_on_one_side():
    groups = np.repeat(np.arange(50), 8)
    rows, items = draw_calibration_sets(np.random.default_rng(0), 30, groups.size, 200, "split",
                                        group_index=groups, group_size=25)
    for repetition in range(30):
        chosen = np.zeros(groups.size, dtype=bool)
        chosen[items[rows == repetition]] = True
        per_group = np.bincount(groups, weights=chosen) / 8
        assert set(np.unique(per_group)) <= {0.0, 1.0}
        assert chosen.sum() == 200
    confidence, agree = _file(n_items=400, seed=3)
    result = validity_study_from_agreement(confidence, agree, 0.1, 0.1, 100, "split",
                                           calibration_size=0.5, groups=groups.astype(str),
                                           random_state=0)
    assert result.calibration_size == 200


def test_seeded_and_tie_policy():
    rng = np.random.default_rng(4)
    n_items = 2000
    confidence = rng.random(n_items)
    pred = rng.choice(np.array(["a", "b"], dtype=object), n_items)
    human = pred.copy()
    flip = rng.random(n_items) < 0.4 * (1 - confidence)
    human[flip] = np.where(pred[flip] == "a", "b", "a")
    human[rng.random(n_items) < 0.1] = "tie"
    first = validity_study(confidence, pred, human, 0.1, 0.1, 300, random_state=5)
    second = validity_study(confidence, pred, human, 0.1, 0.1, 300, random_state=5)
    assert np.array_equal(first.threshold, second.threshold)
    assert first.n_items == int((human != "tie").sum())
    disagree = validity_study(confidence, pred, human, 0.1, 0.1, 300, tie_policy="disagree",
                              random_state=5)
    assert disagree.n_items == n_items
    assert disagree.mean_coverage <= first.mean_coverage
    summary = first.to_dict(repetitions=True)
    assert summary["success_rate"] == first.success_rate
    assert len(summary["repetitions"]["threshold"]) == 300
    assert "split design" in first.sentence()


@pytest.mark.parametrize("kwargs, match", [
    (dict(design="bootstrap"), "design must be one of"),
    (dict(calibration_size=3000), "leave items for the test part"),
    (dict(calibration_size=0.0), "calibration_size must be a fraction"),
    (dict(n_repetitions=0), "n_repetitions must be a positive integer"),
    (dict(design="population", groups=np.zeros(3000)), "groups apply to the split design only"),
    (dict(groups=np.zeros(3000)), "at least 2 groups"),
    (dict(alpha=1.0), "alpha must be a number in"),
    (dict(procedure="bh"), "procedure must be one of"),
])
def test_errors(kwargs, match):
    confidence, agree = _file()
    params = dict(alpha=0.1, delta=0.1, n_repetitions=10)
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        validity_study_from_agreement(confidence, agree, **params)
