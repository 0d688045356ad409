"""Toy scored items shared by the report and apply tests."""

from __future__ import annotations

import numpy as np


def toy_items(n: int, seed: int, shift: float = 0.0, tie_share: float = 0.03):
    """Confidence in [0.5, 1], agreement likelier with confidence; a few human ties."""
    rng = np.random.default_rng(seed)
    confidence = np.clip(rng.uniform(0.5, 1.0, n) + shift, 0.5, 1.0)
    agree = rng.random(n) < confidence
    human = np.where(rng.random(n) < 0.5, "a", "b").astype(object)
    pred = np.where(agree, human, np.where(human == "a", "b", "a")).astype(object)
    human[rng.random(n) < tie_share] = "tie"
    return confidence, pred, human
