"""The exact binomial bound: known values, a scipy oracle, and its equivalence with the test."""

import numpy as np
import pytest
from scipy import stats

from marc_ray.calibrate import (binomial_p_value, clopper_pearson_interval, clopper_pearson_upper,
                                max_disagreements, min_n_to_pass)


@pytest.mark.parametrize("k, n, delta, expected", [
    (0, 10, 0.05, 0.2588655509),    # 1 - 0.05 ** (1 / 10)
    (1, 10, 0.05, 0.3941633),       # textbook one-sided 95% bound for 1/10
    (5, 10, 0.025, 0.8129109),      # upper end of the two-sided 95% interval for 5/10
    (0, 22, 0.1, 0.0993720),        # 1 - 0.1 ** (1 / 22): the smallest n certifying alpha = 0.1
])
def test_known_values(k, n, delta, expected):
    assert clopper_pearson_upper(k, n, delta) == pytest.approx(expected, abs=5e-5)


def test_zero_events_closed_form():
    n = np.arange(1, 500)
    assert np.allclose(clopper_pearson_upper(0, n, 0.1), 1 - 0.1 ** (1 / n), rtol=0, atol=1e-12)


def test_oracle_scipy_beta_ppf():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 5000, size=2000)
    k = rng.integers(0, n)  # k < n
    delta = rng.uniform(0.001, 0.5, size=2000)
    expected = stats.beta.ppf(1 - delta, k + 1, n - k)
    assert np.allclose(clopper_pearson_upper(k, n, delta), expected, rtol=1e-10, atol=1e-12)


def test_degenerate_counts_give_one():
    assert clopper_pearson_upper(0, 0, 0.1) == 1.0
    assert clopper_pearson_upper(7, 7, 0.1) == 1.0
    out = clopper_pearson_upper(np.array([0, 3, 3]), np.array([0, 3, 10]), 0.1)
    assert out[0] == 1.0 and out[1] == 1.0 and out[2] < 1.0


def test_shapes_and_scalar():
    assert isinstance(clopper_pearson_upper(1, 10, 0.1), float)
    assert clopper_pearson_upper(np.zeros((3, 4), int), 10, 0.1).shape == (3, 4)


def test_monotone_in_k_n_delta():
    n = 200
    bounds = clopper_pearson_upper(np.arange(n + 1), n, 0.1)
    assert np.all(np.diff(bounds) > 0)
    assert np.all(np.diff(clopper_pearson_upper(5, np.arange(6, 300), 0.1)) < 0)
    assert clopper_pearson_upper(5, 100, 0.01) > clopper_pearson_upper(5, 100, 0.1)
    # one more disagreement and one more item never lowers the bound
    k = np.arange(0, 99)
    assert np.all(clopper_pearson_upper(k + 1, 101, 0.1) >= clopper_pearson_upper(k, 100, 0.1))


@pytest.mark.parametrize("kwargs, match", [
    (dict(k=1, n=10, delta=0.0), "delta must be in"),
    (dict(k=1, n=10, delta=1.0), "delta must be in"),
    (dict(k=11, n=10, delta=0.1), "0 <= k <= n"),
    (dict(k=-1, n=10, delta=0.1), "0 <= k <= n"),
    (dict(k=1.5, n=10, delta=0.1), "whole numbers"),
])
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        clopper_pearson_upper(**kwargs)


def test_p_value_equivalent_to_bound():
    """The exact test rejects at delta exactly when the bound is at most alpha."""
    alpha, delta = 0.1, 0.1
    n = np.repeat(np.arange(1, 400), 60)
    k = np.minimum(np.tile(np.arange(60), 399), n)
    by_bound = clopper_pearson_upper(k, n, delta) <= alpha
    by_test = binomial_p_value(k, n, alpha) <= delta
    assert np.array_equal(by_bound, by_test)
    assert binomial_p_value(0, 0, 0.1) == 1.0


def test_max_disagreements_matches_brute_force():
    for alpha, delta in [(0.1, 0.1), (0.05, 0.01), (0.3, 0.2), (0.1, 0.1 / 200)]:
        n = np.arange(0, 700)
        table = max_disagreements(n, alpha, delta)
        for size in (0, 1, 21, 22, 45, 100, 333, 699):
            ks = np.arange(size + 1)
            passing = ks[clopper_pearson_upper(ks, size, delta) <= alpha]
            assert table[size] == (passing.max() if passing.size else -1)


def test_min_n_to_pass():
    assert min_n_to_pass(0.1, 0.1) == 22
    assert min_n_to_pass(0.05, 0.1) == 45
    for alpha, delta in [(0.1, 0.1), (0.2, 0.05), (0.05, 0.0005)]:
        n = min_n_to_pass(alpha, delta)
        assert clopper_pearson_upper(0, n, delta) <= alpha < clopper_pearson_upper(0, n - 1, delta)


def test_two_sided_interval_known_value():
    low, high = clopper_pearson_interval(5, 10, 0.95)
    assert low == pytest.approx(0.187086, abs=1e-5)
    assert high == pytest.approx(0.812914, abs=1e-5)
    assert clopper_pearson_interval(0, 10)[0] == 0.0
    assert clopper_pearson_interval(10, 10)[1] == 1.0
    with pytest.raises(ValueError, match="confidence must be in"):
        clopper_pearson_interval(1, 2, 1.5)
