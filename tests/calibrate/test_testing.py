"""Family-wise procedures on counts: hand-checked decisions, abstention, relations, validity.

The validity tests draw fresh calibration sets from a model whose risk curve is known in
closed form, and judge each chosen threshold against the TRUE risk.
"""

import numpy as np
import pytest

from marc_ray.calibrate import (PROCEDURES, calibrate_batch, clopper_pearson_upper, fixed_grid,
                                select_thresholds)


def test_fixed_sequence_by_hand():
    # grid descending; n grows; alpha = 0.2, delta = 0.1, every threshold tested (min_n=1)
    n = np.array([12, 30, 60, 100, 150])
    k = np.array([0, 1, 5, 25, 20])
    bounds = clopper_pearson_upper(k, n, 0.1)
    expected_pass = bounds <= 0.2
    assert expected_pass.tolist() == [True, True, True, False, True]
    selection = select_thresholds(n, k, alpha=0.2, delta=0.1, min_n=1)
    assert selection.index == 2  # stops at the first failure although index 4 would pass
    assert selection.passed.tolist() == [True, True, True, False, False]


def test_abstains_when_first_tested_threshold_fails():
    n = np.array([5, 40, 80, 200])
    k = np.array([0, 30, 5, 10])  # the top tested threshold (n=40) is terrible
    selection = select_thresholds(n, k, alpha=0.1, delta=0.1)  # min_n auto = 22: skips n=5
    assert selection.min_n == 22
    assert selection.tested.tolist() == [False, True, True, True]
    assert selection.index == -1
    assert not selection.passed.any()
    # Bonferroni and Holm do not stop at a failure: they may certify lower thresholds
    assert select_thresholds(n, k, 0.1, 0.1, "bonferroni").index == 3


def test_min_n_skips_leading_thresholds():
    n = np.array([3, 10, 50, 120])
    k = np.array([0, 0, 1, 3])
    assert select_thresholds(n, k, 0.1, 0.1, min_n=1).index == -1  # n=3 cannot pass
    assert select_thresholds(n, k, 0.1, 0.1, min_n=50).index == 3
    with pytest.raises(ValueError, match="min_n must be 'auto' or a positive integer"):
        select_thresholds(n, k, 0.1, 0.1, min_n=0)


def test_unknown_procedure():
    with pytest.raises(ValueError, match="procedure must be one of"):
        select_thresholds([10], [0], 0.1, 0.1, procedure="bh")


def test_batched_selection_equals_row_by_row():
    rng = np.random.default_rng(0)
    confidence = rng.random((30, 400))
    agree = rng.random((30, 400)) >= 0.5 * (1 - confidence)
    for procedure in PROCEDURES:
        batch = calibrate_batch(confidence, agree, 0.15, 0.1, procedure=procedure, n_grid=80)
        rows = [calibrate_batch(confidence[i:i + 1], agree[i:i + 1], 0.15, 0.1, procedure=procedure,
                                n_grid=80)[0] for i in range(30)]
        assert np.array_equal(batch, rows)


def _random_counts(seed, n_grid=100, m=800):
    rng = np.random.default_rng(seed)
    confidence = rng.random(m)
    agree = rng.random(m) >= 0.45 * (1 - confidence) ** 1.5
    from marc_ray.calibrate import counts_at_thresholds

    return counts_at_thresholds(confidence, agree, fixed_grid(n_grid))


@pytest.mark.parametrize("seed", range(8))
def test_relations_between_procedures(seed):
    n, k = _random_counts(seed)
    fst = select_thresholds(n, k, 0.1, 0.1, "fixed_sequence")
    bonferroni = select_thresholds(n, k, 0.1, 0.1, "bonferroni")
    holm = select_thresholds(n, k, 0.1, 0.1, "holm")
    # Holm certifies every threshold Bonferroni does (a step-down from the same first step)
    assert np.all(holm.passed >= bonferroni.passed)
    # the run of Bonferroni passes from the start is also passed by the fixed sequence at delta
    run = 0
    for passed in bonferroni.passed[bonferroni.tested]:
        if not passed:
            break
        run += 1
    assert fst.passed[fst.tested][:run].all()


@pytest.mark.parametrize("procedure", sorted(PROCEDURES))
@pytest.mark.parametrize("seed", range(4))
def test_monotone_in_alpha_and_delta(procedure, seed):
    # With a fixed minimum n the scan starts at the same threshold whatever alpha and delta,
    # and a larger alpha or delta can only let more thresholds pass. (With min_n="auto" the
    # start itself moves with alpha and delta, see docs/guarantee.md.)
    n, k = _random_counts(seed)
    index = [select_thresholds(n, k, a, 0.1, procedure, min_n=60).index for a in (0.05, 0.1, 0.2, 0.3)]
    # larger alpha: a lower (or equal) threshold, i.e. a larger (or equal) grid index
    assert index == sorted(index)
    assert index[-1] >= 0
    index = [select_thresholds(n, k, 0.1, d, procedure, min_n=60).index for d in (0.01, 0.05, 0.1, 0.3)]
    assert index == sorted(index)


# --- validity against the true risk ----------------------------------------------------------
# C ~ Uniform(0, 1); P(disagree | C = c) = 0.4 (1 - c); so the true risk of accepting
# C >= t is R(t) = E[0.4 (1 - C) | C >= t] = 0.2 (1 - t), and R(t) <= alpha iff t >= 1 - 5 alpha.

def _true_risk(threshold):
    threshold = np.asarray(threshold, dtype=float)
    return np.where(np.isfinite(threshold), 0.2 * (1 - np.clip(threshold, 0, 1)), 0.0)


REPETITIONS = 2000


@pytest.mark.parametrize("procedure", sorted(PROCEDURES))
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_failure_rate_at_most_delta_against_true_risk(procedure, alpha):
    delta = 0.1
    rng = np.random.default_rng(1234)
    confidence = rng.random((REPETITIONS, 1000))
    agree = rng.random((REPETITIONS, 1000)) >= 0.4 * (1 - confidence)
    thresholds = calibrate_batch(confidence, agree, alpha, delta, procedure=procedure)
    failure_rate = np.mean(_true_risk(thresholds) > alpha)
    slack = 3 * np.sqrt(delta * (1 - delta) / REPETITIONS)
    assert failure_rate <= delta + slack
    if procedure == "fixed_sequence" and alpha == 0.1:
        # not vacuous: the fixed sequence spends most of its delta (about 0.07 here)
        assert failure_rate > 0.03
        assert np.mean(np.isfinite(thresholds)) > 0.8


def test_abstains_on_overconfident_top():
    """Risk 0.9 above c = 0.9 (an overconfident top): the fixed sequence must accept nothing."""
    rng = np.random.default_rng(7)
    confidence = rng.random((1000, 1000))
    risk = 0.4 * (1 - confidence) + 0.5 * (confidence > 0.9)
    agree = rng.random(confidence.shape) >= risk
    thresholds = calibrate_batch(confidence, agree, 0.1, 0.1)
    assert np.mean(np.isinf(thresholds)) > 0.95
