"""The validity study of per-group certificates: every group's guarantee, and the joint one.

Population design (``validity.py``): each group of the file is its own population. In every
seeded repetition a calibration set is drawn with replacement from each group (a share of the
group's size, so every group keeps its proportion); each group's threshold is certified on its
draw at ``delta_g`` (:func:`group_deltas`), and judged on the whole group. A repetition
succeeds *for group g* when the agreement on g's accepted items is at least ``1 - alpha``
(accepting nothing is a success), and *jointly* when it succeeds for every group. The joint
success rate should be at least ``1 - delta``: that is what a per-group certificate promises.

Next to it, on the same draws, the single-threshold certificate (one threshold certified on the
pooled draws at ``delta``) is judged per group too: where one group is harder than the rest, a
single threshold meets the pooled promise but over-accepts the hard group.

Vectorised like ``validity.py``: one :func:`calibrate_batch` call per group for all
repetitions, and each threshold judged with a sorted cumulative sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bounds import clopper_pearson_interval
from .calibrator import check_alpha, check_delta
from .config import CalibrateConfig
from .grid import as_grid
from .groups import EQUAL_ACROSS_GROUPS, group_deltas
from .validity import ValidityOptions, calibrate_batch

__all__ = ["group_validity_study", "GroupValidityResult", "judge_thresholds"]


def judge_thresholds(confidence, agree, thresholds, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coverage, agreement and success of many thresholds on one population.

    Parameters
    ----------
    confidence : ndarray of float, shape (n,)
    agree : ndarray of bool, shape (n,)
    thresholds : ndarray of float, shape (R,)
    alpha : float

    Returns
    -------
    coverage, agreement, success : ndarray, shape (R,)
        Agreement NaN where nothing is accepted (a success).
    """
    order = np.argsort(confidence, kind="stable")
    sorted_conf = np.asarray(confidence, dtype=float)[order]
    wrong_from_top = np.concatenate([[0], np.cumsum((~np.asarray(agree, bool)[order])[::-1])])
    accepted = sorted_conf.size - np.searchsorted(sorted_conf, thresholds, side="left")
    wrong = wrong_from_top[accepted]
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(accepted > 0, 1 - wrong / np.maximum(accepted, 1), np.nan)
    success = (accepted == 0) | (wrong <= alpha * accepted + 1e-9)
    return accepted / max(sorted_conf.size, 1), agreement, success


@dataclass
class GroupValidityResult:
    """Per-group and joint success of per-group and single-threshold certificates.

    ``per_group[g]`` and ``single[g]``: dicts with ``success_rate``, ``success_interval``
    (exact 95%), ``mean_coverage``, ``mean_agreement`` (over repetitions that accept), ``n``,
    ``delta_g`` (per_group only); ``joint`` / ``single_joint``: the same for "every group at
    once"; ``overall`` / ``single_overall``: success on all items pooled.
    """

    alpha: float
    delta: float
    n_repetitions: int
    per_group: dict
    single: dict
    joint: dict
    single_joint: dict
    overall: dict
    single_overall: dict

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("alpha", "delta", "n_repetitions", "per_group",
                                              "single", "joint", "single_joint", "overall",
                                              "single_overall")}

    def sentence(self) -> str:
        low = self.joint["success_interval"][0]
        worst = min(self.single, key=lambda g: self.single[g]["success_rate"])
        return (f"Per-group thresholds kept every group's promise together in "
                f"{self.joint['success_rate']:.1%} of {self.n_repetitions} repetitions (95% interval "
                f"from {low:.1%}; promised {1 - self.delta:.0%}); one threshold for all kept group "
                f"{worst!r}'s in {self.single[worst]['success_rate']:.1%}.")


def _summary(success, coverage, agreement, **more) -> dict:
    success = np.asarray(success, bool)
    low, high = clopper_pearson_interval(int(success.sum()), success.size, 0.95)
    accepted = np.isfinite(agreement)
    return {"success_rate": float(success.mean()), "success_interval": [float(low), float(high)],
            "mean_coverage": float(np.mean(coverage)),
            "mean_agreement": float(np.mean(agreement[accepted])) if accepted.any() else None,
            **more}


def group_validity_study(confidence, agree, groups, alpha: float = CalibrateConfig.alpha,
                         delta: float = CalibrateConfig.delta,
                         n_repetitions: int = ValidityOptions.repetitions,
                         calibration_size: float = ValidityOptions.calibration_size,
                         delta_split=EQUAL_ACROSS_GROUPS,
                         procedure: str = CalibrateConfig.procedure, grid=None,
                         n_grid: int = CalibrateConfig.n_grid, min_n=CalibrateConfig.min_n,
                         random_state=None) -> GroupValidityResult:
    """Population-design validity study of per-group vs single-threshold certificates.

    Parameters
    ----------
    confidence : array-like of float, shape (n,)
    agree : array-like of bool, shape (n,)
        Agreement with the human label (tie policy applied; items without a verdict should be
        given confidence -inf so that they are never accepted).
    groups : array-like of str, shape (n,)
    alpha, delta, delta_split, procedure, grid, n_grid, min_n
        As for :class:`GroupedCalibrator`.
    n_repetitions : int
    calibration_size : float in (0, 1]
        Draws per group, as a share of the group's size (with replacement).
    random_state : int, optional

    Returns
    -------
    GroupValidityResult
    """
    (alpha,) = check_alpha(alpha)
    delta = check_delta(delta)
    if not 0 < calibration_size <= 1:
        raise ValueError(f"calibration_size must be a share in (0, 1], got {calibration_size!r}")
    confidence = np.asarray(confidence, dtype=float).ravel()
    agree = np.asarray(agree, dtype=bool).ravel()
    groups = np.asarray(groups, dtype=object).astype(str).ravel()
    if not confidence.size == agree.size == groups.size:
        raise ValueError("confidence, agree and groups must have the same length")
    grid = as_grid(grid, n_grid)
    names = sorted(set(groups.tolist()))
    deltas = group_deltas(names, delta, delta_split)
    rng = np.random.default_rng(random_state)
    draws = {}
    for g in names:
        members = np.flatnonzero(groups == g)
        size = max(1, int(round(calibration_size * members.size)))
        draws[g] = members[rng.integers(0, members.size, size=(n_repetitions, size))]
    per_group_thr = {g: calibrate_batch(confidence[d], agree[d], alpha, deltas[g], grid, n_grid,
                                        procedure, min_n) for g, d in draws.items()}
    pooled = np.concatenate([draws[g] for g in names], axis=1)
    single_thr = calibrate_batch(confidence[pooled], agree[pooled], alpha, delta, grid, n_grid,
                                 procedure, min_n)

    per_group, single = {}, {}
    joint_success = np.ones(n_repetitions, bool)
    single_joint = np.ones(n_repetitions, bool)
    accepted_total = np.zeros(n_repetitions)
    wrong_total = np.zeros(n_repetitions)
    for g in names:
        rows = groups == g
        cov, agr, ok = judge_thresholds(confidence[rows], agree[rows], per_group_thr[g], alpha)
        per_group[g] = _summary(ok, cov, agr, n=int(rows.sum()), delta_g=deltas[g],
                                abstention_rate=float(np.isinf(per_group_thr[g]).mean()))
        joint_success &= ok
        n_acc = cov * rows.sum()
        accepted_total += n_acc
        wrong_total += np.where(np.isfinite(agr), (1 - np.nan_to_num(agr)) * n_acc, 0.0)
        cov_s, agr_s, ok_s = judge_thresholds(confidence[rows], agree[rows], single_thr, alpha)
        single[g] = _summary(ok_s, cov_s, agr_s, n=int(rows.sum()))
        single_joint &= ok_s
    with np.errstate(invalid="ignore", divide="ignore"):
        overall_agreement = np.where(accepted_total > 0, 1 - wrong_total / accepted_total, np.nan)
    overall_ok = (accepted_total == 0) | (wrong_total <= alpha * accepted_total + 1e-6)
    cov_all, agr_all, ok_all = judge_thresholds(confidence, agree, single_thr, alpha)
    return GroupValidityResult(
        alpha=alpha, delta=delta, n_repetitions=n_repetitions, per_group=per_group, single=single,
        joint=_summary(joint_success, accepted_total / confidence.size, overall_agreement),
        single_joint=_summary(single_joint, cov_all, agr_all),
        overall=_summary(overall_ok, accepted_total / confidence.size, overall_agreement),
        single_overall=_summary(ok_all, cov_all, agr_all))
