"""A readable confidence: C_θ mapped, strictly increasingly, to an estimated agreement probability.

C_θ is trained to *rank* (a margin ranking loss), so its values are not probabilities: with a
large margin the sigmoid saturates and a threshold reads "confidence ≥ 0.0000114". The
:class:`AgreementMap` is fitted on training data only (the validation part of the training
split, which C_θ was not trained on) by Platt scaling on the score's logit:

    m(s) = sigmoid(a · logit(s) + b),        a = exp(u) > 0,

fitted by maximum likelihood with Platt's smoothed targets ((N+ + 1)/(N+ + 2) for agreements,
1/(N- + 2) for disagreements), which keeps the fit finite when the validation items separate.
The slope is parametrised as exp(u), so the map is strictly increasing whatever the data.

Why Platt and not isotonic regression: isotonic regression is flat on its blocks, so the most
confident items collapse into a band a few 1e-4 wide; a fixed threshold grid cannot split that
band, and the first threshold tested then takes the whole top block at once (a cascade test
certified nothing at its first stage that way). The smooth map keeps the items spread.

The map changes no ranking, so the certified set under a grid mapped through the same map is
identical (tests/fit/test_monotone.py), and the guarantee is untouched; on a fixed grid the map
only moves where the grid points fall. A threshold λ̂ on m(C) reads "estimated agreement ≥ λ̂",
up to the estimation error of a two-parameter fit on the validation items.

Reference: J. Platt, "Probabilistic outputs for support vector machines and comparisons to
regularized likelihood methods", Advances in Large Margin Classifiers, 1999.
"""

from __future__ import annotations

import numpy as np

FORMAT = "marc_ray.agreement_map/2"
_CLIP = 1e-9  # scores are probabilities in (0, 1); the logit of 0 or 1 is clipped


def _logit(scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(scores, dtype=np.float64), _CLIP, 1 - _CLIP)
    return np.log(clipped) - np.log1p(-clipped)


class AgreementMap:
    """Strictly increasing map from a raw score to an estimated P(judge agrees with humans).

    Attributes
    ----------
    slope_, intercept_ : float
        m(s) = sigmoid(slope_ · logit(s) + intercept_), slope_ > 0.
    n_fit_ : int
        Items the map was fitted on; ``fitted_on_`` names them (e.g. "valid").
    """

    def fit(self, scores, agree, fitted_on: str = "valid") -> "AgreementMap":
        from scipy.optimize import minimize
        from scipy.special import expit

        scores = np.asarray(scores, dtype=np.float64).ravel()
        agree = np.asarray(agree, dtype=np.float64).ravel() >= 0.5
        if scores.size != agree.size or scores.size == 0:
            raise ValueError(f"need as many scores as labels (> 0), got {scores.size} and {agree.size}")
        if not np.all(np.isfinite(scores)):
            raise ValueError("scores hold NaN or infinite values")
        n_pos, n_neg = int(agree.sum()), int((~agree).sum())
        target = np.where(agree, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
        x = _logit(scores)
        scale = float(np.std(x)) or 1.0  # optimise on a standardised logit: better conditioned

        def loss(params):
            u, b = params
            z = np.exp(u) * x / scale + b
            p = expit(z)
            value = np.sum(np.logaddexp(0, z) - target * z)  # cross-entropy with soft targets
            residual = p - target
            return value, np.array([np.sum(residual * np.exp(u) * x / scale), np.sum(residual)])

        prior = np.log((n_pos + 1) / (n_neg + 1))
        result = minimize(loss, x0=np.array([0.0, prior]), jac=True, method="L-BFGS-B",
                          bounds=[(-12.0, 12.0), (-50.0, 50.0)])
        u, b = result.x
        self.slope_, self.intercept_ = float(np.exp(u) / scale), float(b)
        self.n_fit_, self.fitted_on_ = int(scores.size), str(fitted_on)
        return self

    def transform(self, scores) -> np.ndarray:
        """m(s) for every score; same shape."""
        from scipy.special import expit

        if not hasattr(self, "slope_"):
            raise ValueError("this AgreementMap is not fitted yet: call fit(scores, agree)")
        return expit(self.slope_ * _logit(scores) + self.intercept_)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "slope": self.slope_, "intercept": self.intercept_,
                "n_fit": self.n_fit_, "fitted_on": self.fitted_on_}

    @classmethod
    def from_dict(cls, data: dict) -> "AgreementMap":
        if data.get("format") != FORMAT:
            raise ValueError(f"not an agreement map (format {data.get('format')!r}, expected "
                             f"{FORMAT!r}); re-run `marc-ray fit`")
        out = cls()
        out.slope_, out.intercept_ = float(data["slope"]), float(data["intercept"])
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
