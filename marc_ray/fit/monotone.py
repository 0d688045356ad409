"""A readable confidence: C_θ mapped, strictly increasingly, to an estimated agreement probability.

C_θ is trained to *rank* (a margin ranking loss), so its values are not probabilities: with a
large margin the sigmoid saturates and a threshold reads "confidence ≥ 0.0000114". The
:class:`AgreementMap` is fitted on training data only (the validation part of the training
split, which C_θ was not trained on) by isotonic regression of the agreement label on C_θ
(pool-adjacent-violators, ``sklearn.isotonic.IsotonicRegression``), linearly interpolated between
its knots and clipped outside them. Isotonic regression is only non-decreasing (flat on its
blocks), so the map blends in the raw score with a small weight ε:

    m(s) = (1 − ε) · iso(s) + ε · s,        strictly increasing, m(s) ∈ (0, 1) for s ∈ (0, 1).

The map changes no ranking, so the certified set under a grid mapped through the same map is
identical (tests/fit/test_monotone.py), and the guarantee is untouched; on a fixed grid the map
only moves where the grid points fall. A threshold λ̂ on m(C) reads "estimated agreement ≥ λ̂",
up to ε and to the estimation error of a fit on a few hundred validation items.

Reference: Zadrozny & Elkan, "Transforming classifier scores into accurate multiclass probability
estimates", KDD 2002 (isotonic calibration of scores).
"""

from __future__ import annotations

import numpy as np

FORMAT = "marc_ray.agreement_map/1"


class AgreementMap:
    """Strictly increasing map from a raw score to an estimated P(judge agrees with humans).

    Parameters
    ----------
    epsilon : float, default=1e-3
        Weight of the raw score in the blend (breaks isotonic ties; in (0, 1)).

    Attributes
    ----------
    knots_x_, knots_y_ : ndarray
        The isotonic fit's knots (increasing x, non-decreasing y in [0, 1]).
    n_fit_ : int
        Items the map was fitted on; ``fitted_on_`` names them (e.g. "valid").
    """

    def __init__(self, epsilon: float = 1e-3):
        self.epsilon = epsilon

    def fit(self, scores, agree, fitted_on: str = "valid") -> "AgreementMap":
        from sklearn.isotonic import IsotonicRegression

        if not 0 < self.epsilon < 1:
            raise ValueError(f"epsilon must be in (0, 1), got {self.epsilon!r}")
        scores = np.asarray(scores, dtype=np.float64).ravel()
        agree = np.asarray(agree, dtype=np.float64).ravel()
        if scores.size != agree.size or scores.size == 0:
            raise ValueError(f"need as many scores as labels (> 0), got {scores.size} and {agree.size}")
        if not np.all(np.isfinite(scores)):
            raise ValueError("scores hold NaN or infinite values")
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        iso.fit(scores, agree)
        self.knots_x_ = np.asarray(iso.X_thresholds_, dtype=np.float64)
        self.knots_y_ = np.asarray(iso.y_thresholds_, dtype=np.float64)
        self.n_fit_, self.fitted_on_ = int(scores.size), str(fitted_on)
        return self

    def transform(self, scores) -> np.ndarray:
        """m(s) for every score; same shape."""
        if not hasattr(self, "knots_x_"):
            raise ValueError("this AgreementMap is not fitted yet: call fit(scores, agree)")
        scores = np.asarray(scores, dtype=np.float64)
        return (1.0 - self.epsilon) * np.interp(scores, self.knots_x_, self.knots_y_) \
            + self.epsilon * scores

    def to_dict(self) -> dict:
        return {"format": FORMAT, "epsilon": self.epsilon, "knots_x": self.knots_x_.tolist(),
                "knots_y": self.knots_y_.tolist(), "n_fit": self.n_fit_,
                "fitted_on": self.fitted_on_}

    @classmethod
    def from_dict(cls, data: dict) -> "AgreementMap":
        if data.get("format") != FORMAT:
            raise ValueError(f"not an agreement map (format {data.get('format')!r}, expected {FORMAT!r})")
        out = cls(float(data["epsilon"]))
        out.knots_x_ = np.asarray(data["knots_x"], dtype=np.float64)
        out.knots_y_ = np.asarray(data["knots_y"], dtype=np.float64)
        out.n_fit_, out.fitted_on_ = int(data["n_fit"]), str(data["fitted_on"])
        return out


def fit_agreement_map(valid_scores, valid_agree, train_scores, train_agree,
                      min_valid: int = 30) -> AgreementMap:
    """The map from the validation part, or from train ∪ validation when that part is too small.

    The validation part is preferred: C_θ was not trained on it, so its scores are not
    overfitted. With fewer than ``min_valid`` validation items, or only one kind of them, the
    training items are added (recorded in ``fitted_on_``).
    """
    valid_agree = np.asarray(valid_agree) >= 0.5
    if len(valid_agree) >= min_valid and 0 < valid_agree.sum() < len(valid_agree):
        return AgreementMap().fit(valid_scores, valid_agree, "valid")
    scores = np.concatenate([np.asarray(valid_scores, float), np.asarray(train_scores, float)])
    agree = np.concatenate([valid_agree, np.asarray(train_agree) >= 0.5])
    return AgreementMap().fit(scores, agree, "train+valid")
