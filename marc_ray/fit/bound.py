"""The spectrally normalised margin bound for ranking, and the margin line search (pure numpy).

For a network C_θ with weight matrices W_1..W_n (n layers, largest width h) trained on m_p
(agree, disagree) pairs, MARC bounds the ranking risk RK = P(C(s_i) < C(s_j)) by

    RK(θ) ≤ R̂K_γ(θ) + sqrt((Φ(C_θ) + ln(3 m_p / δ′)) / (γ² (m_p − 1)))

with the empirical margin risk R̂K_γ = share of pairs with C(s_i) − C(s_j) < γ and

    Φ(C_θ) = n² h ln(n h) · Π_l ‖W_l‖₂² · Σ_l ‖W_l‖_F² / ‖W_l‖₂².

The constants hidden in the paper's O(·) are unknown. This module evaluates the right-hand side
with them set to 1, which on these sample sizes is vacuous (> 1) and whose slack falls as 1/γ:
minimising it would always pick the largest γ (measured: γ = 1.0, the top of the range, on every
data set). So it is **not** what the margin line search minimises (that is MARC's training
objective, :func:`marc_ray.fit.loss.line_search_margin`); it is computed at the chosen γ every
epoch and reported term by term, as a diagnostic of the margin/complexity trade-off, never as
the guarantee (the guarantee comes from fixed-sequence testing).

References
----------
Jin, Tao, Yu, Huang. "Margin-Adaptive Confidence Ranking" (MARC), ICML 2026, arXiv 2605.15416.
Neyshabur, Bhojanapalli, Srebro. "A PAC-Bayesian approach to spectrally-normalized margin
bounds for neural networks", ICLR 2018.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from .config import FitConfig


@dataclass(frozen=True)
class BoundTerms:
    """Every term of the bound at one margin γ."""

    gamma: float               # the margin γ
    empirical_margin_risk: float  # R̂K_γ: share of pairs with C_i − C_j < γ
    complexity: float          # Φ(C_θ)
    confidence_term: float     # ln(3 m_p / δ′)
    n_pairs: int               # m_p
    delta_prime: float         # δ′
    slack: float               # sqrt((Φ + ln(3 m_p/δ′)) / (γ² (m_p − 1)))
    bound: float               # R̂K_γ + slack (the right-hand side; may exceed 1)
    depth: int                 # n, the number of weight layers
    width: int                 # h, the largest layer width
    spectral_product: float    # Π ‖W_l‖₂²
    frobenius_ratio_sum: float  # Σ ‖W_l‖_F² / ‖W_l‖₂²

    def to_dict(self) -> dict:
        return asdict(self)


def spectral_complexity(weights: Sequence[np.ndarray]) -> tuple[float, dict]:
    """Φ(C_θ) of a network with weight matrices ``weights`` (biases are not part of Φ).

    Parameters
    ----------
    weights : sequence of ndarray, each of shape (out_features, in_features)

    Returns
    -------
    phi : float
    parts : dict
        ``depth`` n, ``width`` h (largest of any layer's in/out size), ``spectral_product``
        Π‖W‖₂², ``frobenius_ratio_sum`` Σ‖W‖_F²/‖W‖₂².
    """
    if not weights:
        raise ValueError("the network has no weight matrices")
    depth = len(weights)
    width = max(max(w.shape) for w in weights)
    spectral = np.array([np.linalg.norm(np.asarray(w, dtype=float), ord=2) for w in weights]) ** 2
    frobenius = np.array([np.sum(np.asarray(w, dtype=float) ** 2) for w in weights])
    ratio_sum = float(np.sum(frobenius / np.maximum(spectral, 1e-300)))
    product = float(np.prod(spectral))
    phi = depth ** 2 * width * math.log(depth * width) * product * ratio_sum
    return phi, {"depth": depth, "width": width, "spectral_product": product,
                 "frobenius_ratio_sum": ratio_sum}


def margin_risk(differences: np.ndarray, gamma: float) -> float:
    """R̂K_γ: share of pair differences C_i − C_j (agree minus disagree) below γ.

    Parameters
    ----------
    differences : ndarray of float, shape (m_p,)
    """
    return float(np.mean(np.asarray(differences) < gamma))


def bound_terms(differences: np.ndarray, weights: Sequence[np.ndarray], gamma: float,
                delta_prime: float = FitConfig.delta_prime,
                n_pairs: int | None = None) -> BoundTerms:
    """The bound's right-hand side at margin ``gamma``, with every term.

    Parameters
    ----------
    differences : ndarray of float, shape (m,)
        C(s_i) − C(s_j) over the (agree i, disagree j) pairs.
    weights : sequence of ndarray
        The network's weight matrices, input to output.
    gamma : float
        The margin, > 0.
    delta_prime : float
    n_pairs : int, optional
        m_p when the pairs were counted elsewhere (e.g. summed over DDP ranks);
        defaults to ``len(differences)``.

    Raises
    ------
    ValueError
        γ ≤ 0, δ′ outside (0, 1), or fewer than 2 pairs.
    """
    m_p = int(n_pairs if n_pairs is not None else len(differences))
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    if not 0 < delta_prime < 1:
        raise ValueError(f"delta_prime must be in (0, 1), got {delta_prime}")
    if m_p < 2:
        raise ValueError(f"the bound needs at least 2 pairs, got {m_p}")
    phi, parts = spectral_complexity(weights)
    return _terms(margin_risk(differences, gamma), phi, parts, gamma, m_p, delta_prime)


def _terms(risk: float, phi: float, parts: dict, gamma: float, m_p: int,
           delta_prime: float) -> BoundTerms:
    confidence = math.log(3 * m_p / delta_prime)
    slack = math.sqrt((phi + confidence) / (gamma ** 2 * (m_p - 1)))
    return BoundTerms(float(gamma), float(risk), float(phi), confidence, m_p, float(delta_prime),
                      slack, float(risk + slack), **parts)


def margin_grid(margin_min: float, margin_max: float, size: int) -> np.ndarray:
    """The candidate margins of the line search: geometric from ``margin_min`` to ``margin_max``."""
    return np.geomspace(margin_min, margin_max, size)


def bound_at(risk: float, weights: Sequence[np.ndarray], gamma: float, n_pairs: int,
             delta_prime: float) -> BoundTerms:
    """The bound's terms at margin ``gamma`` from an already computed margin risk R̂K_γ.

    Used by the training loop, where R̂K_γ is counted over pairs (possibly summed over DDP
    ranks) at the γ the line search chose. A diagnostic: see the module docstring.
    """
    if n_pairs < 2:
        raise ValueError(f"the bound needs at least 2 pairs, got {n_pairs}")
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    phi, parts = spectral_complexity(weights)
    return _terms(float(risk), phi, parts, float(gamma), int(n_pairs), delta_prime)


# ---------------------------------------------------------------------------------------------
# Reading the bound: above 1 it says nothing (a ranking risk is at most 1)
# ---------------------------------------------------------------------------------------------

def pairs_for_bound(terms: dict, target: float = 0.5) -> float:
    """The fewest pairs m_p at which the right-hand side would fall below ``target``.

    Holds everything else of ``terms`` (a :class:`BoundTerms` as a dict) fixed: the empirical
    margin risk R̂K_γ, the complexity Φ, γ and δ′. It solves

        R̂K_γ + sqrt((Φ + ln(3 m / δ′)) / (γ² (m − 1))) < target

    for the smallest integer m: the slack decreases in m (its numerator grows as ln m, its
    denominator as m), so a doubling search then a bisection finds it exactly.

    Returns
    -------
    float
        m (an integer value), or ``inf`` when R̂K_γ >= target (no number of pairs helps).
    """
    room = target - float(terms["empirical_margin_risk"])
    if room <= 0:
        return math.inf
    phi, gamma, delta_prime = float(terms["complexity"]), float(terms["gamma"]), float(terms["delta_prime"])

    def below(m: float) -> bool:
        return (phi + math.log(3 * m / delta_prime)) / (gamma ** 2 * (m - 1)) < room ** 2

    high = 2.0
    while not below(high):
        high *= 2
        if high > 1e300:
            return math.inf
    low = high / 2 if high > 2 else 1.0  # below(low) is False (or low = 1, outside the formula)
    while high - low > 1:
        middle = math.floor((low + high) / 2)
        low, high = (low, middle) if below(middle) else (middle, high)
    return float(high)


def bound_reading(terms: dict | None, target: float = 0.5) -> dict | None:
    """What a bound's value says: ``bound``, ``vacuous`` (above 1: it bounds a risk that is at
    most 1 anyway, so it says nothing), ``n_pairs`` it was computed on, ``pairs_for_target``
    (:func:`pairs_for_bound`) and ``target``."""
    if not terms or terms.get("bound") is None:
        return None
    value = float(terms["bound"])
    return {"bound": value, "vacuous": bool(value > 1), "n_pairs": int(terms["n_pairs"]),
            "target": target, "pairs_for_target": pairs_for_bound(terms, target)}


def bound_sentence(reading: dict | None) -> str:
    """:func:`bound_reading` in words, e.g. "bound 585 (above 1: vacuous, it says nothing about
    the ranking risk; it would fall below 0.5 at about 2.1e+09 pairs, holding its margin risk,
    complexity and margin fixed; computed on 20000 pairs)"."""
    if reading is None:
        return "no bound recorded"
    pairs = reading["pairs_for_target"]
    if math.isinf(pairs):
        where = (f"no number of pairs would bring it below {reading['target']:g}: its margin risk "
                 f"alone is not below that")
    else:
        where = (f"it would fall below {reading['target']:g} at about {pairs:.3g} pairs, holding its "
                 f"margin risk, complexity and margin fixed")
    head = f"bound {reading['bound']:.4g}"
    if reading["vacuous"]:
        head += " (above 1: vacuous, it says nothing about the ranking risk"
    else:
        head += " (a bound on the ranking risk"
    return f"{head}; {where}; computed on {reading['n_pairs']} pairs)"
