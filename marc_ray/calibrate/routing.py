"""Routing: which judge of a cascade decides an item, or that it goes to humans.

The one rule every part of the package applies (``CascadeCalibrator``, ``SelectiveCalibrator``,
``apply``, the report, the benchmark's validity study): an item is decided by the first stage
whose confidence on it reaches that stage's threshold λ̂ **and** that gave it a verdict; an item
no stage decides is escalated. NaN confidence never passes, and λ̂ = +inf (the certificate
abstained at that stage) accepts nothing. The guarantee covers exactly this rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..contracts import PREDICTIONS, Certificate

__all__ = ["ESCALATE", "Routing", "certificate_thresholds", "deciding_stage", "route",
           "stage_matrix"]

ESCALATE = "escalate"


@dataclass
class Routing:
    """Where each item went: what every calibrator's ``route`` returns (one type for all three).

    Attributes
    ----------
    stage : ndarray of int, shape (n,)
        Index of the deciding stage, -1 when escalated.
    verdict : ndarray of object, shape (n,)
        "a", "b" or "escalate".
    unseen : ndarray of bool, shape (n,)
        The item's group was not in the calibration set, so it is escalated for that reason
        (per-group routing, ``groups.route_by_group``); all False without groups.
    """

    stage: np.ndarray
    verdict: np.ndarray
    unseen: np.ndarray

    @property
    def accepted(self) -> np.ndarray:
        return self.stage >= 0


def stage_matrix(values, dtype) -> np.ndarray:
    """Per-stage values as a matrix of shape (n, L): from (n,), (n, L), or a list of L per-stage
    arrays of shape (n,) (the calibrators' ``route`` takes any of these)."""
    if isinstance(values, (list, tuple)) and values and np.ndim(values[0]) == 1:
        return np.stack([np.asarray(v, dtype=dtype).ravel() for v in values], axis=1)
    matrix = np.asarray(values, dtype=dtype)
    return matrix[:, None] if matrix.ndim == 1 else matrix


def certificate_thresholds(certificate: Certificate) -> np.ndarray:
    """The thresholds λ̂ of the certificate's stages, shape (n_stages,); ``inf``: nothing accepted."""
    return np.array([float(stage["threshold"]) for stage in certificate.stages], dtype=float)


def deciding_stage(confidence: np.ndarray, has_verdict: np.ndarray, thresholds: np.ndarray
                   ) -> np.ndarray:
    """The routing rule on arrays: index of the first stage that accepts each item, else -1.

    Parameters
    ----------
    confidence : ndarray of float, shape (n, L)
    has_verdict : ndarray of bool, shape (n, L)
    thresholds : ndarray of float, shape (L,) or (R, L)
        One threshold per stage (or R sets of them, e.g. R repetitions of a validity study).

    Returns
    -------
    stage : ndarray of int, shape (n,) or (R, n)
    """
    confidence = np.asarray(confidence, dtype=float)
    thresholds = np.asarray(thresholds, dtype=float)
    # NaN >= λ is False (nan_to_num makes that explicit), and λ = inf accepts nothing
    passes = ((np.nan_to_num(confidence, nan=-np.inf) >= thresholds[..., None, :])
              & np.asarray(has_verdict, dtype=bool))
    return np.where(passes.any(axis=-1), passes.argmax(axis=-1), -1)


def route(thresholds: Certificate | np.ndarray, confidence: np.ndarray, pred: np.ndarray) -> Routing:
    """Route items through a certificate's (or given) stage thresholds.

    Parameters
    ----------
    thresholds : Certificate or ndarray of shape (n_stages,)
        A certificate's thresholds are read with :func:`certificate_thresholds`.
    confidence : ndarray of shape (n, n_stages) (or (n,) for one stage)
        Each stage's confidence on each item; NaN (not judged, unreadable) is never accepted.
    pred : ndarray of object, same shape
        Each stage's verdict, "a" or "b" (None: no verdict, never accepted).

    Returns
    -------
    Routing
    """
    if isinstance(thresholds, Certificate):
        thresholds = certificate_thresholds(thresholds)
    thresholds = np.asarray(thresholds, dtype=float).ravel()
    confidence = np.asarray(confidence, dtype=float)
    pred = np.asarray(pred, dtype=object)
    if confidence.ndim == 1:
        confidence = confidence[:, None]
    if pred.ndim == 1:
        pred = pred[:, None]
    if confidence.shape[1] != thresholds.size or pred.shape != confidence.shape:
        raise ValueError(f"confidence {confidence.shape} and pred {pred.shape} must both be "
                         f"(n_items, {thresholds.size}) for a {thresholds.size}-stage certificate")
    stage = deciding_stage(confidence, np.isin(pred, PREDICTIONS), thresholds)
    verdict = np.full(len(stage), ESCALATE, dtype=object)
    decided = stage >= 0
    verdict[decided] = pred[np.flatnonzero(decided), stage[decided]]
    return Routing(stage=stage, verdict=verdict, unseen=np.zeros(len(stage), dtype=bool))
