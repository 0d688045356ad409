"""Cascade validity study, vectorised over repetitions (the routing rule of calibrate.routing)."""

from __future__ import annotations

import numpy as np

from ..calibrate import calibrate_batch, clopper_pearson_interval
from ..calibrate.routing import deciding_stage
from .config import DESIGNS


def cascade_validity(confidences: np.ndarray, agrees: np.ndarray, alpha: float, delta: float, *,
                     design: str, calibration_fraction: float, n_repetitions: int, grid,
                     groups: np.ndarray | None = None, random_state=None) -> dict:
    """Validity study of a cascade: stage l calibrated at ``delta / L`` on what stages < l left.

    Parameters
    ----------
    confidences, agrees : ndarray, shape (n_stages, n_items)
        Each stage's confidence and whether its verdict agrees with the human label.
    design : {"population", "split"}
        As in :func:`marc_ray.calibrate.validity_study_from_agreement` (groups: split only).

    Returns
    -------
    dict
        ``success_rate``, ``success_interval`` (exact 95%), ``mean_coverage``,
        ``abstention_rate``, ``stage_share`` (mean share of evaluated items decided per stage).
    """
    confidences = np.atleast_2d(np.asarray(confidences, dtype=float))
    agrees = np.atleast_2d(np.asarray(agrees, dtype=bool))
    n_stages, n_items = confidences.shape
    stage_delta = delta / n_stages
    rng = np.random.default_rng(random_state)
    size = max(1, int(round(calibration_fraction * n_items)))
    if design == "population":
        calibration = rng.integers(0, n_items, size=(n_repetitions, size))  # with replacement
        weights = np.ones((n_repetitions, n_items))                        # judged on the whole part
    elif design == "split":
        if groups is None:
            keys = rng.random((n_repetitions, n_items))
            calibration = np.argpartition(keys, size - 1, axis=1)[:, :size]
            in_calibration = np.zeros((n_repetitions, n_items), dtype=bool)
            np.put_along_axis(in_calibration, calibration, True, axis=1)
        else:
            _, group_index = np.unique(np.asarray(groups).astype(str), return_inverse=True)
            n_groups = int(group_index.max()) + 1
            chosen_size = max(1, min(n_groups - 1, int(round(calibration_fraction * n_groups))))
            keys = rng.random((n_repetitions, n_groups))
            chosen = np.zeros((n_repetitions, n_groups), dtype=bool)
            np.put_along_axis(chosen, np.argpartition(keys, chosen_size - 1, axis=1)[:, :chosen_size], True, axis=1)
            in_calibration = chosen[:, group_index]
        weights = (~in_calibration).astype(float)
    else:
        raise ValueError(f"design must be one of {list(DESIGNS)}, got {design!r}")

    thresholds = []
    remaining_calibration = None
    for stage in range(n_stages):
        if design == "population":
            confidence = confidences[stage][calibration]
            agree = agrees[stage][calibration]
        else:  # the calibration part, with test items masked below every threshold
            confidence = np.where(in_calibration, confidences[stage][None, :], -1.0)
            agree = np.broadcast_to(agrees[stage], confidence.shape)
        if remaining_calibration is not None:
            confidence = np.where(remaining_calibration, confidence, -1.0)
        threshold = calibrate_batch(confidence, agree, alpha, stage_delta, grid=grid)
        taken = confidence >= threshold[:, None]
        remaining_calibration = (confidence >= 0) & ~taken if remaining_calibration is None \
            else remaining_calibration & ~taken
        thresholds.append(threshold)
    # the deployment rule (calibrate.routing) on the evaluated items, every repetition at once
    items = confidences.T                                                   # (n_items, n_stages)
    stage_of = deciding_stage(items, np.ones(items.shape, dtype=bool), np.stack(thresholds, axis=1))
    decided = weights * (stage_of >= 0)                                     # (n_repetitions, n_items)
    accepted = decided.sum(axis=1)
    agree_routed = agrees.T[np.arange(n_items)[None, :], np.maximum(stage_of, 0)]
    wrong = (decided * ~agree_routed).sum(axis=1)
    stage_share = [float(np.mean((weights * (stage_of == stage)).sum(axis=1) / weights.sum(axis=1)))
                   for stage in range(n_stages)]
    success = (accepted == 0) | (wrong <= alpha * accepted + 1e-9)
    low, high = clopper_pearson_interval(int(success.sum()), n_repetitions, 0.95)
    return {"success_rate": float(success.mean()), "success_interval": (float(low), float(high)),
            "mean_coverage": float(np.mean(accepted / weights.sum(axis=1))),
            "abstention_rate": float(np.mean(accepted == 0)), "stage_share": stage_share}
