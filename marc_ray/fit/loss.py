"""The pairwise margin-ranking objective of MARC.

For an agreement case i and a disagreement case j, the surrogate of 1[C_i − C_j < γ] is

    ℓ_γ,τ(i, j) = softplus(−(C_θ(s_i) − C_θ(s_j) − γ) / τ),

averaged over (agree, disagree) pairs sampled afresh at every step; MARC adds the complexity
penalty β · sqrt(Σ_l ‖W_l‖_F²) / γ, which grows as the margin shrinks. The sum of the two is
MARC's training objective L(θ, γ); θ (SGD, :func:`pair_surrogate` + :func:`complexity_penalty`)
and γ (:func:`line_search_margin`) descend that one objective in turn.

Why the γ step has an interior optimum: at fixed θ the surrogate softplus(−(Δ − γ)/τ) grows
with γ (d/dγ = mean σ((γ − Δ)/τ)/τ > 0) while the penalty falls as 1/γ (d/dγ = −β‖W‖/γ²).
Both are convex in γ, so L(θ, ·) has one minimum; it lies strictly inside [γ_min, γ_max] when
the penalty's slope dominates at γ_min and the surrogate's at γ_max, i.e. whenever β‖W‖ is
neither negligible (γ̂ → γ_min) nor huge (γ̂ → γ_max) against the pairs' margins.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..contracts import ContractError


def check_pairable(agree: np.ndarray, source: str = "<training data>", min_each: int = 2) -> None:
    """Raise unless there are enough agreement *and* disagreement cases to form pairs.

    Parameters
    ----------
    agree : ndarray of float, shape (n,)
        1.0 for agreement cases, 0.0 for disagreement cases.
    min_each : int
        The fewest cases of each kind accepted.
    """
    n_agree = int(np.sum(agree >= 0.5))
    n_disagree = int(np.sum(agree < 0.5))
    if min(n_agree, n_disagree) < min_each:
        raise ContractError(source, f"too few cases to form (agree, disagree) pairs: {n_agree} "
                            f"agreement and {n_disagree} disagreement cases (need at least "
                            f"{min_each} of each)", field="human_label",
                            hint="label more items, use tie_policy='disagree', or use a "
                            "heuristic confidence (conf_simulated) instead of a learned one")


def sample_pairs(agree_index: torch.Tensor, disagree_index: torch.Tensor, n_pairs: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n_pairs`` (agree, disagree) index pairs uniformly with replacement.

    Returns
    -------
    i, j : LongTensor, each of shape (n_pairs,)
        Row indices of the agreement and disagreement case of each pair.
    """
    pick_i = torch.randint(len(agree_index), (n_pairs,), generator=generator)
    pick_j = torch.randint(len(disagree_index), (n_pairs,), generator=generator)
    return agree_index[pick_i], disagree_index[pick_j]


def pair_surrogate(c_agree: torch.Tensor, c_disagree: torch.Tensor, gamma: float, tau: float,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean softplus(−(C_i − C_j − γ)/τ) over pairs (optionally weighted).

    Parameters
    ----------
    c_agree, c_disagree : Tensor, shape (m,)
        Confidences of the agreement and disagreement case of each pair.
    gamma : float
        The margin, in confidence units.
    tau : float
        The temperature: smaller is closer to the 0-1 margin loss.
    weights : Tensor, shape (m,), optional
        Pair weights (soft targets); the weighted mean is taken.
    """
    losses = F.softplus(-(c_agree - c_disagree - gamma) / tau)
    if weights is None:
        return losses.mean()
    return (losses * weights).sum() / weights.sum().clamp_min(1e-12)


def surrogate_by_margin(differences: np.ndarray, gammas: np.ndarray, tau: float,
                        weights: np.ndarray | None = None) -> np.ndarray:
    """Σ over pairs of (weighted) softplus(−(Δ − γ)/τ), for every γ of ``gammas``.

    Sums, not means, so that DDP ranks can add theirs before dividing by the total weight.

    Parameters
    ----------
    differences : ndarray, shape (m,)
        Δ = C(s_i) − C(s_j) over (agree i, disagree j) pairs.
    gammas : ndarray, shape (g,)
    weights : ndarray, shape (m,), optional

    Returns
    -------
    ndarray, shape (g,)
    """
    d = np.asarray(differences, dtype=np.float64)[:, None]
    losses = np.logaddexp(0.0, -(d - np.asarray(gammas, dtype=np.float64)[None, :]) / tau)
    if weights is None:
        return losses.sum(axis=0)
    return (losses * np.asarray(weights, dtype=np.float64)[:, None]).sum(axis=0)


def margin_objective(mean_surrogate: np.ndarray, gammas: np.ndarray, beta: float,
                     weight_norm: float) -> np.ndarray:
    """L(θ, γ) = mean surrogate at γ + β · weight_norm / γ, at every γ (θ fixed).

    ``weight_norm`` is sqrt(Σ_l ‖W_l‖_F²) of the network at θ.
    """
    return np.asarray(mean_surrogate, dtype=np.float64) + beta * weight_norm / np.asarray(gammas)


def line_search_margin(mean_surrogate: np.ndarray, gammas: np.ndarray, beta: float,
                       weight_norm: float) -> tuple[int, np.ndarray]:
    """The γ step: the grid point minimising MARC's training objective at fixed θ.

    Returns
    -------
    index : int
        Position of γ̂ in ``gammas`` (the smallest such γ on ties).
    objective : ndarray, shape (g,)
        L(θ, γ) at every grid point.
    """
    objective = margin_objective(mean_surrogate, gammas, beta, weight_norm)
    return int(np.argmin(objective)), objective


def weight_norm(weight_matrices: Sequence[torch.Tensor]) -> float:
    """sqrt(Σ_l ‖W_l‖_F²), the norm inside the complexity penalty."""
    with torch.no_grad():
        return float(torch.sqrt(sum((w.detach().double() ** 2).sum() for w in weight_matrices)))


def complexity_penalty(weight_matrices: Sequence[torch.Tensor], beta: float, gamma: float
                       ) -> torch.Tensor:
    """β · sqrt(Σ_l ‖W_l‖_F²) / γ."""
    total = sum((w ** 2).sum() for w in weight_matrices)
    return beta * torch.sqrt(total) / gamma
