"""Per-group validity: every group's guarantee and the joint one hold; one threshold fails a hard group."""

import numpy as np
import pytest

from marc_ray.calibrate import SelectiveCalibrator, calibrate_batch
from marc_ray.calibrate.group_validity import group_validity_study, judge_thresholds
from marc_ray.calibrate.groups import GroupedCalibrator

ALPHA, DELTA, REPS = 0.1, 0.1, 1000


def _two_groups(seed=0):
    """An easy group (agreement near 1 at high confidence) and a hard one whose agreement
    never exceeds 85% at the same confidences: pooled, the top items still look fine."""
    rng = np.random.default_rng(seed)
    n_easy, n_hard = 3000, 1000
    conf = rng.uniform(0.5, 1, n_easy + n_hard)
    groups = np.r_[np.full(n_easy, "easy"), np.full(n_hard, "hard")].astype(object)
    x = (conf - 0.5) / 0.5
    p_agree = np.where(groups == "easy", 0.75 + 0.25 * x, 0.55 + 0.3 * x)
    agree = rng.random(conf.size) < p_agree
    return conf, agree, groups


def test_one_threshold_fails_the_hard_group_per_group_thresholds_hold_it():
    conf, agree, groups = _two_groups()
    result = group_validity_study(conf, agree, groups, ALPHA, DELTA, REPS, calibration_size=0.5,
                                  random_state=1)
    slack = 3 * np.sqrt(DELTA * (1 - DELTA) / REPS)
    # per-group certificates: each group, and all groups together, keep the promise
    for g in ("easy", "hard"):
        assert result.per_group[g]["success_rate"] >= 1 - DELTA - slack
    assert result.joint["success_rate"] >= 1 - DELTA - slack
    # the hard group cannot reach 90% anywhere: per-group it abstains (honest), pooled it is
    # over-accepted below its promise far more often than delta allows (0.62 here: the other
    # repetitions' pooled threshold happens to sit above every hard item)
    assert result.per_group["hard"]["abstention_rate"] > 0.9
    assert result.single["hard"]["success_rate"] < 1 - DELTA - 0.15
    assert result.single["hard"]["mean_coverage"] > 0.05
    assert result.single["hard"]["mean_agreement"] < 1 - ALPHA
    # the single threshold still meets its own, pooled, promise
    assert result.single_overall["success_rate"] >= 1 - DELTA - slack
    assert "Per-group thresholds kept every group's promise" in result.sentence()


def test_joint_guarantee_with_several_certifiable_groups():
    rng = np.random.default_rng(5)
    conf, agree, groups = [], [], []
    for g, (n, slope) in enumerate([(1500, 0.3), (800, 0.5), (1200, 0.7)]):
        c = rng.uniform(0.5, 1, n)
        conf.append(c)
        agree.append(rng.random(n) < 1 - slope * (1 - c))
        groups.append(np.full(n, f"g{g}"))
    conf, agree, groups = map(np.concatenate, (conf, agree, groups))
    result = group_validity_study(conf, agree, groups, ALPHA, DELTA, REPS, random_state=2)
    slack = 3 * np.sqrt(DELTA * (1 - DELTA) / REPS)
    assert result.joint["success_rate"] >= 1 - DELTA - slack
    assert all(result.per_group[g]["mean_coverage"] > 0.1 for g in result.per_group)
    assert result.per_group["g0"]["delta_g"] == pytest.approx(DELTA / 3)


def test_study_thresholds_equal_grouped_calibrator_on_one_draw():
    conf, agree, groups = _two_groups(seed=3)
    rows = groups == "easy"
    thresholds = calibrate_batch(conf[rows][None], agree[rows][None], ALPHA, DELTA / 2)
    grouped = GroupedCalibrator(alpha=ALPHA, delta=DELTA).calibrate(
        conf, np.full(conf.size, "a", dtype=object), np.where(agree, "a", "b"), groups=groups)
    assert thresholds[0] == grouped.thresholds_["easy"][0]
    single = SelectiveCalibrator(alpha=ALPHA, delta=DELTA).calibrate_agreement(conf[rows], agree[rows])
    coverage, agreement, success = judge_thresholds(conf[rows], agree[rows], np.array([single.threshold_]), ALPHA)
    assert coverage[0] == pytest.approx(single.coverage_)
    assert agreement[0] == pytest.approx(single.agreement_) and success[0] == (single.agreement_ >= 0.9)
