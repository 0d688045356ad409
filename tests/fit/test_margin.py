"""The γ step: a line search on MARC's training objective, with an interior optimum."""

import numpy as np
import pytest
import torch

from marc_ray.fit import FitConfig, MarcConfidence
from marc_ray.fit.bound import margin_grid
from marc_ray.fit.loss import line_search_margin, surrogate_by_margin, weight_norm


def _objective_brute_force(differences, gammas, tau, beta, norm):
    # written independently of marc_ray.fit.loss: log(1 + exp(x)) per pair and γ, in a loop
    out = []
    for g in gammas:
        x = -(differences - g) / tau
        out.append(np.mean(np.where(x > 30, x, np.log1p(np.exp(np.minimum(x, 30))))) + beta * norm / g)
    return np.array(out)


def test_surrogate_sums_match_torch_softplus():
    rng = np.random.default_rng(0)
    d = rng.normal(0.1, 0.2, 300)
    gammas = np.array([0.01, 0.1, 0.5])
    expected = [float(torch.nn.functional.softplus(-(torch.tensor(d) - g) / 0.1).sum()) for g in gammas]
    assert surrogate_by_margin(d, gammas, 0.1) == pytest.approx(expected)
    w = rng.uniform(0, 1, 300)
    assert surrogate_by_margin(d, gammas, 0.1, w)[1] == pytest.approx(
        float((torch.nn.functional.softplus(-(torch.tensor(d) - 0.1) / 0.1) * torch.tensor(w)).sum()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_line_search_finds_the_interior_optimum_of_a_brute_force_search(seed):
    rng = np.random.default_rng(seed)
    differences = rng.normal(0.25, 0.2, 5000)  # pair margins of a moderately good ranker
    tau, beta, norm = 0.1, 1e-3, 6.0
    fine = np.linspace(0.005, 1.0, 20_000)
    brute = _objective_brute_force(differences, fine, tau, beta, norm)
    best = fine[np.argmin(brute)]
    assert 0.02 < best < 0.9                  # the optimum is interior: the case is meaningful
    grid = margin_grid(0.01, 1.0, 50)
    pick, objective = line_search_margin(surrogate_by_margin(differences, grid, tau) / 5000,
                                         grid, beta, norm)
    assert 0 < pick < len(grid) - 1           # strictly inside the search range
    ratio = grid[1] / grid[0]
    assert best / ratio <= grid[pick] <= best * ratio  # within one grid step of the optimum
    assert objective[pick] == pytest.approx(brute.min(), rel=0.02)


def test_the_smallest_optimum_is_sqrt_beta_norm_tau_so_the_default_floor_is_below_it():
    # a ranker with no separation at all (Δ ≪ 0: every σ((γ − Δ)/τ) = 1) has the smallest
    # optimum: d/dγ = 1/τ − β‖W‖/γ² = 0 at γ* = sqrt(β‖W‖τ); the default floor must sit below it
    from marc_ray.fit import FitConfig
    config = FitConfig()
    beta, tau, norm = config.complexity_weight, config.temperature, 6.0  # ‖W‖ ≈ 6 at MARC's init
    d = np.full(1000, -5.0)
    grid = margin_grid(1e-4, 1.0, 400)
    pick, _ = line_search_margin(surrogate_by_margin(d, grid, tau) / len(d), grid, beta, norm)
    assert grid[pick] == pytest.approx(np.sqrt(beta * norm * tau), rel=0.03)
    assert config.margin_min < np.sqrt(beta * 1.0 * tau)  # interior down to ‖W‖ = 1


def test_edges_when_the_penalty_is_negligible_or_huge():
    d = np.random.default_rng(3).normal(0.25, 0.2, 2000)
    grid = margin_grid(0.01, 1.0, 50)
    mean = surrogate_by_margin(d, grid, 0.1) / len(d)
    assert line_search_margin(mean, grid, 0.0, 6.0)[0] == 0               # no penalty: γ_min
    assert line_search_margin(mean, grid, 100.0, 6.0)[0] == len(grid) - 1  # penalty only: γ_max


def test_fitted_margin_is_interior_and_recorded_per_epoch(trap_table, tmp_path):
    config = FitConfig(epochs=8, n_pairs=2000)
    model = MarcConfidence(config).fit(trap_table)
    gammas = model.gamma_history_
    assert len(gammas) == 8 and gammas[model.best_epoch_] == model.gamma_  # the kept epoch's γ̂
    assert all(config.margin_min < g < config.margin_max for g in gammas)
    assert not any(h["gamma_at_edge"] for h in model.history_)
    # at the kept θ, the brute-force optimum over all training pairs agrees with its γ̂
    from marc_ray.fit.data import prepare
    data = prepare(trap_table, config)
    scores = model.score_features(data.train.features, raw=True)
    agree = data.train.agree >= 0.5
    differences = (scores[agree][:, None] - scores[~agree][None, :]).ravel()
    norm = weight_norm(model.model_.weight_matrices())
    fine = np.geomspace(config.margin_min, config.margin_max, 2000)
    best = fine[np.argmin(_objective_brute_force(differences, fine, config.temperature,
                                                 config.complexity_weight, norm))]
    assert best / 1.5 <= model.gamma_ <= best * 1.5
    model.save(tmp_path / "m")
    assert MarcConfidence.load(tmp_path / "m").gamma_history_ == gammas
