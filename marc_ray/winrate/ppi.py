"""Prediction-powered inference (PPI++) for a mean and for Bradley–Terry strengths: pure maths.

A few human labels Y on n labelled items, the judge's prediction f of the same quantity on those
items and on N unlabelled ones. The judge's mean alone is biased; the labelled mean alone is
valid but wide. PPI corrects the judge's mean with the labelled residuals and, with the
power-tuning λ of PPI++, is never (asymptotically) wider than the labelled mean, and narrower
when the judge is informative.

Mean (Angelopoulos, Bates, Fannjiang, Jordan, Zrnic, *Prediction-powered inference*, Science
382, 2023; Angelopoulos, Duchi, Zrnic, *PPI++: Efficient prediction-powered inference*,
arXiv:2311.01453, 2023, Example 6.1 with the λ of Eq. (8))::

    θ̂_λ   = (1/n) Σ (Y_i − λ f_i) + λ (1/N) Σ f̃_j
    SE²    = Var(Y − λ f) / n + λ² Var(f̃) / N
    λ̂      = Cov(Y, f) / ((1 + n/N) Var(f)),  clipped to [0, 1]
    CI     = θ̂ ± z_{1−δ/2} · SE

λ = 0 is the human-only estimate; λ = 1 is classical PPI. The interval is a normal
(asymptotic) one: below :data:`MIN_LABELLED` labelled items it is refused.

Bradley–Terry (PPI++ for a generalised linear model, Angelopoulos et al. 2023, §4 and PPI++
Algorithm 1), with a weak N(0, 3²) prior on the strengths (:data:`PRIOR_SD`): the logistic loss ℓ(z, y; φ) = softplus(z·φ) − y z·φ with soft labels y ∈ [0, 1],
z = the model contrast of an item; the PPI++ loss L_λ(φ) = mean_lab ℓ(Y) + λ (mean_unl ℓ(f̃) −
mean_lab ℓ(f)) is convex for λ ∈ [0, 1]; Σ = H⁻¹ (Cov(∇ℓ_Y − λ∇ℓ_f)/n + λ² Cov(∇ℓ_f̃)/N) H⁻¹;
λ̂ = tr(H⁻¹ C H⁻¹) / (2 (1 + n/N) tr(H⁻¹ V_f H⁻¹)) with C the symmetrised cross-covariance of
the label and prediction gradients (the choice the authors' library ``ppi_py`` makes).

Every function here works on arrays; the mean's functions also on a leading batch axis (many
simulated data sets at once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

__all__ = ["MIN_LABELLED", "MIN_LABELLED_PER_MODEL", "MeanEstimate", "StrengthEstimate", "bradley_terry", "labels_to_halve",
           "power_tuning", "ppi_mean", "tuned_variance", "z_value"]

# Below this many labelled items a normal interval on a 0/1 outcome undercovers visibly (checked
# in tests/winrate/test_ppi.py: at n = 30, p up to 0.85, coverage stays within 2 points of
# 1 − δ); a pair or leaderboard with fewer is refused rather than given a false interval.
MIN_LABELLED = 30
# Bradley–Terry: each model needs this many labelled items for its strength's interval (the
# sandwich variance of a model with a handful of items, all won, is near 0: LLMFAO at ~10 labels
# per model covered 40 of 59 all-label strengths at 90%; docs/benchmarks_real_data.md)
MIN_LABELLED_PER_MODEL = 20
# Bradley–Terry: a N(0, PRIOR_SD²) prior on the free strengths (log-odds), i.e. the penalty
# |φ|² / (2 PRIOR_SD² n) on the mean loss (sklearn's LogisticRegression with C = PRIOR_SD²).
# Without it a model that wins (or loses) every one of its few labelled items has an infinite
# strength (LLMFAO: 59 models, ~10 labelled items each at a 25% budget); with n labels it
# weighs like 1/(PRIOR_SD² n) of the data, so it vanishes as labels accumulate.
PRIOR_SD = 3.0


def z_value(delta: float) -> float:
    """The two-sided normal quantile z_{1−δ/2}."""
    return float(stats.norm.ppf(1.0 - delta / 2.0))


@dataclass
class MeanEstimate:
    """A PPI++ mean with its interval (each field a float, or an array over a batch axis)."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    se: np.ndarray
    lam: np.ndarray
    var_rectifier: np.ndarray   # Var(Y − λ f) on the labelled items
    var_unlabelled: np.ndarray  # Var(f̃) on the unlabelled items
    n: int
    N: int
    var_y: np.ndarray = 0.0     # Var(Y), Cov(Y, f) on the labelled items, Var(f) on all items:
    cov_yf: np.ndarray = 0.0    # what the width would be with more labels and λ re-tuned
    var_f: np.ndarray = 0.0

    @property
    def width(self) -> np.ndarray:
        return self.high - self.low

    def to_dict(self) -> dict:
        return {"estimate": float(self.estimate), "low": float(self.low), "high": float(self.high),
                "se": float(self.se), "lambda": float(self.lam), "n_labelled": self.n,
                "n_unlabelled": self.N}


def _var(x: np.ndarray) -> np.ndarray:
    return np.var(x, axis=-1, ddof=1) if x.shape[-1] > 1 else np.zeros(x.shape[:-1])


def _moments(y: np.ndarray, f: np.ndarray, f_unlabelled: np.ndarray):
    """Cov(Y, f) on the labelled items and Var(f) on all items."""
    centred_y = y - y.mean(axis=-1, keepdims=True)
    centred_f = f - f.mean(axis=-1, keepdims=True)
    covariance = (centred_y * centred_f).sum(axis=-1) / max(y.shape[-1] - 1, 1)
    return covariance, _var(np.concatenate([f, f_unlabelled], axis=-1))


def power_tuning(y: np.ndarray, f: np.ndarray, f_unlabelled: np.ndarray) -> np.ndarray:
    """PPI++'s λ̂ for a mean: Cov(Y, f) / ((1 + n/N) Var(f over all items)), clipped to [0, 1]."""
    n, N = y.shape[-1], f_unlabelled.shape[-1]
    covariance, variance = _moments(y, f, f_unlabelled)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = covariance / ((1.0 + n / N) * variance)
    return np.clip(np.nan_to_num(lam, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def ppi_mean(y, f, f_unlabelled, delta: float, lam=None) -> MeanEstimate:
    """PPI++ estimate of E[Y] and its 1 − δ interval.

    Parameters
    ----------
    y : array of shape (..., n)
        The human outcome on the labelled items (here 1, 0 or ½).
    f : array of shape (..., n)
        The judge's prediction of the same on those items.
    f_unlabelled : array of shape (..., N)
        The judge's prediction on the unlabelled items.
    delta : float
        Miscoverage: the interval holds E[Y] with probability ≈ 1 − δ.
    lam : float or array, optional
        The weight of the judge; None: power-tuned (:func:`power_tuning`); 0: human only.

    Returns
    -------
    MeanEstimate
    """
    y, f, f_unlabelled = (np.asarray(a, dtype=float) for a in (y, f, f_unlabelled))
    lam = power_tuning(y, f, f_unlabelled) if lam is None else np.broadcast_to(
        np.asarray(lam, dtype=float), y.shape[:-1]).copy()
    rectified = y - lam[..., None] * f
    estimate = rectified.mean(axis=-1) + lam * f_unlabelled.mean(axis=-1)
    var_rectifier, var_unlabelled = _var(rectified), _var(f_unlabelled)
    se = np.sqrt(var_rectifier / y.shape[-1] + lam ** 2 * var_unlabelled / f_unlabelled.shape[-1])
    z = z_value(delta)
    covariance, variance = _moments(y, f, f_unlabelled)
    return MeanEstimate(estimate, estimate - z * se, estimate + z * se, se, lam, var_rectifier,
                        var_unlabelled, y.shape[-1], f_unlabelled.shape[-1], _var(y), covariance,
                        variance)


def tuned_variance(estimate: MeanEstimate, n: int) -> float:
    """SE² with ``n`` labelled items and λ re-tuned for them (the same N and moments):
    (1/n) (Var(Y) − λ² Var(f) (1 + n/N)) at λ = clip(Cov(Y, f) / (Var(f) (1 + n/N)), 0, 1)
    (the minimum over λ of (Var(Y) − 2λ Cov + λ² Var(f))/n + λ² Var(f)/N)."""
    var_y, cov, var_f = float(estimate.var_y), float(estimate.cov_yf), float(estimate.var_f)
    inflation = 1.0 + n / estimate.N
    lam = float(np.clip(cov / (var_f * inflation), 0.0, 1.0)) if var_f > 0 else 0.0
    return (var_y - 2 * lam * cov + lam ** 2 * var_f * inflation) / n


def labels_to_halve(estimate: MeanEstimate) -> int:
    """How many more labelled items would halve the interval's width, λ re-tuned for them.

    The smallest n' with SE²(n') <= SE²/4 (:func:`tuned_variance`, the moments held at their
    estimates), minus n. With a fixed λ the judge's term λ²Var(f̃)/N would not shrink with
    labels; re-tuning lowers λ as labels accumulate, so some n' always suffices.
    """
    target = float(estimate.se) ** 2 / 4.0
    if target <= 0.0:
        return 0
    high = max(estimate.n, 1)
    while tuned_variance(estimate, high) > target:
        high *= 2
    low = max(estimate.n, 1)
    while low < high:
        middle = (low + high) // 2
        if tuned_variance(estimate, middle) > target:
            low = middle + 1
        else:
            high = middle
    return max(low - estimate.n, 0)


# ---------------------------------------------------------------------------------------------
# Bradley–Terry by PPI++ logistic regression
# ---------------------------------------------------------------------------------------------

@dataclass
class StrengthEstimate:
    """Bradley–Terry strengths (log-odds, sum-to-zero over the models) with 1 − δ intervals."""

    strength: np.ndarray     # (K,)
    low: np.ndarray
    high: np.ndarray
    se: np.ndarray
    lam: float
    covariance: np.ndarray   # (K, K)


def _contrast(k: int) -> np.ndarray:
    """C of shape (K, K−1): strengths β = C φ sum to zero (the last is minus the others' sum)."""
    return np.vstack([np.eye(k - 1), -np.ones((1, k - 1))])


def _ridge(n: int) -> float:
    return 1.0 / (2.0 * PRIOR_SD ** 2 * n)


def _loss_and_grad(phi, z_lab, y, f_lab, z_unl, f_unl, lam):
    eta_l, eta_u = z_lab @ phi, z_unl @ phi
    s_l, s_u = special.expit(eta_l), special.expit(eta_u)
    soft_l, soft_u = np.logaddexp(0.0, eta_l), np.logaddexp(0.0, eta_u)
    ridge = _ridge(len(y))
    loss = np.mean(soft_l - y * eta_l) + ridge * phi @ phi
    grad = z_lab.T @ (s_l - y) / len(y) + 2 * ridge * phi
    if lam:  # the judge's terms (absent for human-only, and with no unlabelled item)
        loss += lam * (np.mean(soft_u - f_unl * eta_u) - np.mean(soft_l - f_lab * eta_l))
        grad += lam * (z_unl.T @ (s_u - f_unl) / len(f_unl) - z_lab.T @ (s_l - f_lab) / len(y))
    return loss, grad


def _fit(z_lab, y, f_lab, z_unl, f_unl, lam, start):
    result = optimize.minimize(_loss_and_grad, start, args=(z_lab, y, f_lab, z_unl, f_unl, lam),
                               jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return result.x


def _pieces(phi, z_lab, y, f_lab, z_unl, f_unl):
    """Per-item gradients (labels, predictions, unlabelled predictions) and the Hessian."""
    s_l, s_u = special.expit(z_lab @ phi), special.expit(z_unl @ phi)
    g_y = z_lab * (s_l - y)[:, None]
    g_f = z_lab * (s_l - f_lab)[:, None]
    g_u = z_unl * (s_u - f_unl)[:, None]
    weights = np.concatenate([s_l * (1 - s_l), s_u * (1 - s_u)])
    z_all = np.vstack([z_lab, z_unl])
    hessian = (z_all * weights[:, None]).T @ z_all / len(z_all) \
        + 2 * _ridge(len(y)) * np.eye(z_all.shape[1])
    return g_y, g_f, g_u, hessian


def _glm_lambda(g_y, g_f, g_u, inverse_hessian) -> float:
    n, N = len(g_y), len(g_u)
    cy, cf = g_y - g_y.mean(0), g_f - g_f.mean(0)
    cross = (cy.T @ cf + cf.T @ cy) / n
    var_f = np.atleast_2d(np.cov(np.vstack([g_f, g_u]).T))
    numerator = np.trace(inverse_hessian @ cross @ inverse_hessian)
    denominator = 2 * (1 + n / N) * np.trace(inverse_hessian @ var_f @ inverse_hessian)
    return float(np.clip(numerator / denominator, 0.0, 1.0)) if denominator > 0 else 0.0


def bradley_terry(first, second, y, f, first_unl, second_unl, f_unl, n_models: int, delta: float,
                  lam: float | None = None) -> StrengthEstimate:
    """PPI++ Bradley–Terry strengths: P(first beats second) = sigmoid(β_first − β_second).

    Parameters
    ----------
    first, second : int arrays of shape (n,)
        Model indices (0..K−1) of each labelled item's response_a / response_b.
    y : array of shape (n,)
        The human outcome for ``first`` (1, 0 or ½).
    f : array of shape (n,)
        The judge's probability that ``first``'s response is better.
    first_unl, second_unl, f_unl : arrays of shape (N,)
        The same for the unlabelled items.
    n_models : int
    delta : float
    lam : float, optional
        None: power-tuned; 0: human labels only.

    Returns
    -------
    StrengthEstimate
    """
    contrast = _contrast(n_models)

    def design(a, b):
        rows = np.zeros((len(a), n_models))
        rows[np.arange(len(a)), a] += 1.0
        rows[np.arange(len(a)), b] -= 1.0
        return rows @ contrast

    z_lab, z_unl = design(first, second), design(first_unl, second_unl)
    y, f, f_unl = (np.asarray(a, dtype=float) for a in (y, f, f_unl))
    start = np.zeros(n_models - 1)
    if len(f_unl) < 2:
        lam = 0.0  # nothing unlabelled: the human-only fit
    if lam is None:  # PPI++: tune λ at the classical-PPI fit, then refit with it
        phi = _fit(z_lab, y, f, z_unl, f_unl, 1.0, start)
        g_y, g_f, g_u, hessian = _pieces(phi, z_lab, y, f, z_unl, f_unl)
        lam = _glm_lambda(g_y, g_f, g_u, np.linalg.inv(hessian))
    phi = _fit(z_lab, y, f, z_unl, f_unl, lam, start)
    g_y, g_f, g_u, hessian = _pieces(phi, z_lab, y, f, z_unl, f_unl)
    inverse_hessian = np.linalg.inv(hessian)
    rectifier = g_y - lam * g_f
    middle = np.atleast_2d(np.cov(rectifier.T)) / len(y)
    if lam:
        middle = middle + lam ** 2 * np.atleast_2d(np.cov(g_u.T)) / len(g_u)
    covariance = contrast @ inverse_hessian @ middle @ inverse_hessian @ contrast.T
    strength = contrast @ phi
    se = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    z = z_value(delta)
    return StrengthEstimate(strength, strength - z * se, strength + z * se, se, float(lam),
                            covariance)
