"""Exact binomial bounds: the Clopper–Pearson upper bound and the matching exact test.

Everything here is a pure, vectorised function of counts: ``k`` disagreements among ``n``
accepted items. The one-sided upper bound at level ``delta`` is

    U(k, n; delta) = Beta.ppf(1 - delta; k + 1, n - k)      (U = 1 when n == 0 or k == n)

and ``U <= alpha`` holds exactly when the exact binomial test rejects "risk > alpha", i.e.
``P(Binomial(n, alpha) <= k) <= delta``. Pass/fail decisions use that exact p-value
(:func:`binomial_p_value`, a regularised incomplete beta function: cheap), and the bound is
reported; :func:`max_disagreements` turns the test into a table (the largest ``k`` that still
passes for each ``n``) for the batched paths, built from the same p-value.

References
----------
.. [1] C. J. Clopper and E. S. Pearson, "The use of confidence or fiducial limits illustrated
   in the case of the binomial", Biometrika 26(4), 1934.
.. [2] J. Jung, F. Brahman, Y. Choi, "Trust or Escalate: LLM Judges with Provable Guarantees
   for Human Agreement", ICLR 2025.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import special  # not scipy.stats: its import alone costs ~1 s on every CLI call

__all__ = ["clopper_pearson_upper", "clopper_pearson_interval", "binomial_p_value",
           "max_disagreements", "min_n_to_pass", "n_needed_at_rate"]


def _check_level(name: str, value) -> np.ndarray:
    value = np.asarray(value, dtype=float)
    if np.any(~np.isfinite(value)) or np.any(value <= 0) or np.any(value >= 1):
        raise ValueError(f"{name} must be in (0, 1), got {value.tolist()!r}")
    return value


def _check_counts(k, n) -> tuple[np.ndarray, np.ndarray]:
    k_array, n_array = np.asarray(k), np.asarray(n)
    for name, array in (("k", k_array), ("n", n_array)):
        if array.size and (not np.all(np.isfinite(array)) or np.any(array != np.floor(array))):
            raise ValueError(f"{name} must hold whole numbers, got {array.ravel()[:5].tolist()!r}")
    k_array, n_array = np.broadcast_arrays(k_array.astype(np.int64), n_array.astype(np.int64))
    if np.any(n_array < 0) or np.any(k_array < 0) or np.any(k_array > n_array):
        raise ValueError("counts must satisfy 0 <= k <= n")
    return k_array, n_array


def clopper_pearson_upper(k, n, delta):
    """Exact one-sided (1 - delta) upper confidence bound on a binomial proportion.

    Parameters
    ----------
    k : int or array-like of int, shape (...)
        Number of events (disagreements) observed.
    n : int or array-like of int, shape (...)
        Number of trials (accepted items); broadcast against ``k``.
    delta : float or array-like of float in (0, 1)
        Error level: the bound holds with probability at least ``1 - delta``.

    Returns
    -------
    upper : float or ndarray of float, shape (...)
        ``scipy.stats.beta.ppf(1 - delta, k + 1, n - k)``, and 1.0 where ``n == 0`` or
        ``k == n`` (no information / every item an event). A float for scalar inputs.

    Raises
    ------
    ValueError
        If ``delta`` is outside (0, 1) or the counts do not satisfy ``0 <= k <= n``.

    Examples
    --------
    >>> round(clopper_pearson_upper(0, 10, 0.05), 4)   # the "rule of three" regime
    0.2589
    """
    delta_array = _check_level("delta", delta)
    k_array, n_array = _check_counts(k, n)
    k_array, n_array, delta_array = np.broadcast_arrays(k_array, n_array, delta_array)
    upper = np.ones(k_array.shape, dtype=float)
    informative = (n_array > 0) & (k_array < n_array)
    if np.any(informative):
        # betaincinv is the same special function beta.ppf calls, without the dispatch cost
        upper[informative] = special.betaincinv(k_array[informative] + 1.0,
                                                (n_array - k_array)[informative],
                                                1.0 - delta_array[informative])
    return float(upper) if upper.ndim == 0 else upper


def clopper_pearson_interval(k, n, confidence: float = 0.95):
    """Exact two-sided Clopper–Pearson interval, ``confidence`` split evenly between the tails.

    Parameters
    ----------
    k, n : int or array-like of int, shape (...)
        Successes and trials.
    confidence : float in (0, 1), default=0.95

    Returns
    -------
    low, high : float or ndarray, shape (...)
        ``low = 0`` where ``k == 0``; ``high = 1`` where ``k == n`` (and both 0/1 when n == 0).
    """
    _check_level("confidence", confidence)
    k_array, n_array = _check_counts(k, n)
    tail = (1.0 - confidence) / 2.0
    low = np.zeros(k_array.shape, dtype=float)
    high = np.ones(k_array.shape, dtype=float)
    has_low = (k_array > 0) & (n_array > 0)
    has_high = (k_array < n_array) & (n_array > 0)
    # Beta(a, b).ppf(q) is the inverse regularised incomplete beta function betaincinv(a, b, q)
    low[has_low] = special.betaincinv(k_array[has_low], n_array[has_low] - k_array[has_low] + 1, tail)
    high[has_high] = special.betaincinv(k_array[has_high] + 1, n_array[has_high] - k_array[has_high],
                                        1 - tail)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def binomial_p_value(k, n, alpha):
    """Exact p-value of the null "risk > alpha" given ``k`` events in ``n`` trials.

    ``P(Binomial(n, alpha) <= k) = I_{1 - alpha}(n - k, k + 1)`` (the regularised incomplete
    beta function, which is fast, unlike its inverse); 1.0 where ``n == 0`` (an empty set
    proves nothing) or ``k == n``. It is at most ``delta`` exactly when
    ``clopper_pearson_upper(k, n, delta) <= alpha``: the test and the bound are one decision.

    Parameters
    ----------
    k, n : array-like of int, shape (...)
    alpha : float in (0, 1)

    Returns
    -------
    p_value : float or ndarray of float, shape (...)
    """
    _check_level("alpha", alpha)
    k_array, n_array = _check_counts(k, n)
    p_value = _p_value(k_array, n_array, float(alpha))
    return float(p_value) if p_value.ndim == 0 else p_value


def _p_value(k: np.ndarray, n: np.ndarray, alpha: float) -> np.ndarray:
    """binomial_p_value without input checks (int arrays with 0 <= k <= n; hot loops)."""
    p_value = np.ones(np.shape(k), dtype=float)
    informative = (n > 0) & (k < n)
    p_value[informative] = special.betainc((n - k)[informative], k[informative] + 1.0, 1.0 - alpha)
    return p_value


def max_disagreements(n, alpha: float, delta: float) -> np.ndarray:
    """The largest ``k`` that still passes at each ``n``: ``P(Bin(n, alpha) <= k) <= delta``.

    Equivalently the largest ``k`` with ``clopper_pearson_upper(k, n, delta) <= alpha``; -1
    when no ``k`` passes (e.g. ``n == 0``). Computed once per distinct ``n`` (a vectorised
    bisection on the exact p-value, which grows with ``k``), it turns the per-threshold test
    into an integer comparison: this is what makes the validity study fast.

    Parameters
    ----------
    n : array-like of int, shape (...)
    alpha, delta : float in (0, 1)

    Returns
    -------
    k_max : ndarray of int64, shape (...)
    """
    _check_level("alpha", alpha)
    _check_level("delta", delta)
    n_array = np.asarray(n, dtype=np.int64)
    if np.any(n_array < 0):
        raise ValueError("n must be >= 0")
    unique, inverse = np.unique(n_array, return_inverse=True)
    # invariant: k = low passes (low = -1 stands for "none"), k = high fails (k = n always does)
    low = np.full(unique.shape, -1, dtype=np.int64)
    high = unique.copy()
    for _ in range(int(np.ceil(np.log2(max(int(unique.max(initial=0)), 1) + 2))) + 1):
        middle = (low + high) // 2
        active = high - low > 1
        passes = _p_value(np.clip(middle, 0, None), unique, float(alpha)) <= delta
        low = np.where(active & passes, middle, low)
        high = np.where(active & ~passes, middle, high)
    return low[inverse].reshape(n_array.shape)


@lru_cache(maxsize=1024)
def min_n_to_pass(alpha: float, delta: float) -> int:
    """The smallest number of accepted items at which any threshold can pass.

    With no disagreement at all the bound is ``1 - delta ** (1 / n)``, which is at most
    ``alpha`` once ``n >= ln(delta) / ln(1 - alpha)`` (e.g. 22 for alpha = delta = 0.1).
    Thresholds accepting fewer items can never pass, whatever their labels, so this is the
    data-independent default of the minimum-n rule.
    """
    _check_level("alpha", alpha)
    _check_level("delta", delta)
    # the decision rule is the exact p-value (1 - alpha) ** n <= delta; settle rounding with it
    n = max(int(np.ceil(np.log(delta) / np.log1p(-alpha))), 1)
    while n > 1 and _p_value(np.array([0]), np.array([n - 1]), alpha)[0] <= delta:
        n -= 1
    while _p_value(np.array([0]), np.array([n]), alpha)[0] > delta:
        n += 1
    return n


def n_needed_at_rate(rate: float, alpha: float, delta: float, n_max: int = 10_000_000) -> float:
    """The fewest accepted items that certify ``alpha`` if their disagreement rate is ``rate``.

    The smallest ``n`` whose exact test passes at ``k = round(rate * n)`` disagreements
    (equivalently ``clopper_pearson_upper(k, n, delta) <= alpha``), found by doubling then
    bisection; ``inf`` when ``rate >= alpha`` (no size certifies it) or beyond ``n_max``.
    At ``rate = 0`` it is :func:`min_n_to_pass`. (Pass/fail is close to, not exactly,
    monotone in ``n`` because ``k`` is rounded; the bisection returns a passing ``n``.)

    Examples
    --------
    >>> n_needed_at_rate(0.0, 0.1, 0.1) == min_n_to_pass(0.1, 0.1)
    True
    >>> n_needed_at_rate(0.1, 0.1, 0.1)
    inf
    """
    _check_level("alpha", alpha)
    _check_level("delta", delta)
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be in [0, 1], got {rate!r}")
    if rate >= alpha:
        return float("inf")

    def passes(n: int) -> bool:
        k = np.array([int(round(rate * n))])
        return bool(_p_value(k, np.array([n]), float(alpha))[0] <= delta)

    high = 1
    while not passes(high):
        high *= 2
        if high > n_max:
            return float("inf")
    low = high // 2
    while high - low > 1:
        middle = (low + high) // 2
        if passes(middle):
            high = middle
        else:
            low = middle
    return float(high)
