import math

import numpy as np
import pytest

from marc_ray.fit.bound import bound_at, bound_terms, margin_grid, spectral_complexity


def test_complexity_matches_a_hand_computation():
    w1 = np.diag([3.0, 1.0])                 # ‖W‖₂² = 9, ‖W‖_F² = 10
    w2 = np.array([[2.0, 0.0]])              # ‖W‖₂² = 4, ‖W‖_F² = 4
    phi, parts = spectral_complexity([w1, w2])
    n, h = 2, 2
    expected = n ** 2 * h * math.log(n * h) * (9 * 4) * (10 / 9 + 4 / 4)
    assert phi == pytest.approx(expected)
    assert parts["spectral_product"] == pytest.approx(36.0)


def test_bound_terms_are_finite_and_add_up():
    rng = np.random.default_rng(0)
    differences = rng.normal(0.2, 0.3, size=1000)
    weights = [rng.normal(size=(8, 5)), rng.normal(size=(1, 8))]
    terms = bound_terms(differences, weights, gamma=0.1, delta_prime=0.05)
    assert terms.empirical_margin_risk == pytest.approx(np.mean(differences < 0.1))
    assert terms.confidence_term == pytest.approx(math.log(3 * 1000 / 0.05))
    slack = math.sqrt((terms.complexity + terms.confidence_term) / (0.1 ** 2 * 999))
    assert terms.slack == pytest.approx(slack)
    assert terms.bound == pytest.approx(terms.empirical_margin_risk + slack)
    assert all(math.isfinite(v) for v in terms.to_dict().values())


def test_bound_at_a_counted_risk_equals_the_bound_from_differences():
    rng = np.random.default_rng(1)
    differences = rng.normal(0.3, 0.2, size=5000)
    weights = [0.05 * rng.normal(size=(4, 3)), 0.05 * rng.normal(size=(1, 4))]
    direct = bound_terms(differences, weights, 0.2)
    counted = bound_at(np.mean(differences < 0.2), weights, 0.2, 5000, 0.05)
    assert counted == direct


def test_the_bound_with_unit_constants_always_prefers_the_largest_margin():
    # why the line search does not minimise it: at these sizes Φ dominates and the slack
    # falls as 1/γ, so γ_max wins even though R̂K_γ is then 1 (no information)
    rng = np.random.default_rng(2)
    differences = rng.normal(0.2, 0.2, size=5000)
    weights = [rng.normal(size=(64, 155)) / 12, rng.normal(size=(1, 64)) / 8]
    grid = margin_grid(0.01, 1.0, 40)
    bounds = [bound_terms(differences, weights, g).bound for g in grid]
    assert int(np.argmin(bounds)) == len(grid) - 1 and min(bounds) > 1


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="gamma must be > 0"):
        bound_terms(np.zeros(5), [np.eye(2)], gamma=0.0)
    with pytest.raises(ValueError, match="at least 2 pairs"):
        bound_terms(np.zeros(1), [np.eye(2)], gamma=0.1)
