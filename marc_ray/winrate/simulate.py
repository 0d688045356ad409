"""Generated pairs with a known true win rate: what the win-rate tests and the study measure.

Each of ``n_sets`` data sets holds n labelled and N unlabelled items of one model pair. The
human outcome is Y ~ Bernoulli(θ) (θ the true win rate). The judge's probability is
f = sigmoid(κ (2Y − 1) + b + ε), ε ~ N(0, 1): κ sets how informative the judge is (0: noise),
b its bias (its mean is then not θ: the judge-only win rate is biased). Everything is drawn at
once from ``numpy.random.default_rng(seed)``, shape (n_sets, n) and (n_sets, N).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from .ppi import ppi_mean


@dataclass(frozen=True)
class PairDesign:
    """One generated design (every field has a default)."""

    win_rate: float = 0.65      # θ: the true human-preference win rate
    informativeness: float = 1.5  # κ
    judge_bias: float = 0.5     # b (logit scale)
    n_labelled: int = 100
    n_unlabelled: int = 2000


def draw(design: PairDesign, n_sets: int, seed: int):
    """(y, f, f_unlabelled) of shapes (n_sets, n), (n_sets, n), (n_sets, N)."""
    rng = np.random.default_rng(seed)
    total = design.n_labelled + design.n_unlabelled
    outcome = rng.random((n_sets, total)) < design.win_rate
    logit = design.informativeness * (2.0 * outcome - 1.0) + design.judge_bias \
        + rng.standard_normal((n_sets, total))
    f = special.expit(logit)
    n = design.n_labelled
    return outcome[:, :n].astype(float), f[:, :n], f[:, n:]


def study(design: PairDesign, delta: float = 0.1, n_sets: int = 2000, seed: int = 0) -> dict:
    """Coverage, mean width and bias of PPI++, human-only and judge-only over ``n_sets`` draws."""
    y, f, f_unlabelled = draw(design, n_sets, seed)
    theta = design.win_rate
    ppi, human = ppi_mean(y, f, f_unlabelled, delta), ppi_mean(y, f, f_unlabelled, delta, lam=0.0)
    judge_only = np.concatenate([f, f_unlabelled], axis=1).mean(axis=1)

    def covered(estimate):
        return float(np.mean((estimate.low <= theta) & (theta <= estimate.high)))

    return {"n_sets": n_sets, "delta": delta, "true_win_rate": theta,
            "ppi_coverage": covered(ppi), "human_coverage": covered(human),
            "ppi_width": float(np.mean(ppi.width)), "human_width": float(np.mean(human.width)),
            "ppi_narrower_share": float(np.mean(ppi.width <= human.width + 1e-12)),
            "ppi_bias": float(np.mean(ppi.estimate) - theta),
            "judge_only_bias": float(np.mean(judge_only) - theta),
            "mean_lambda": float(np.mean(ppi.lam))}
