"""Toy certified judges for the report and apply tests (numpy only, seeded)."""

from __future__ import annotations

import numpy as np
import pytest

from marc_ray.calibrate.calibrator import SelectiveCalibrator
from marc_ray.calibrate.cascade import CascadeCalibrator
from marc_ray.calibrate.grid import fixed_grid
from report_toys import toy_items


@pytest.fixture(scope="module")
def single():
    """A single-judge certificate that accepts part of the items (alpha 0.15, delta 0.1)."""
    confidence, pred, human = toy_items(600, seed=0)
    grid = fixed_grid(100, 0.5, 1.0)
    calibrator = SelectiveCalibrator(alpha=0.15, delta=0.1, grid=grid).calibrate(
        confidence, pred, human, names=["toy-judge"])
    certificate = calibrator.certificate("sha256:toy", confidence_names=["conf_marc"],
                                         extra={"calibration_confidence": {"toy-judge": confidence.tolist()}})
    assert 0 < calibrator.coverage_ < 1
    return certificate, (confidence, pred, human)


@pytest.fixture(scope="module")
def abstaining():
    """A certificate where even the top threshold fails (alpha far below the judge's risk)."""
    confidence, pred, human = toy_items(200, seed=1)
    calibrator = SelectiveCalibrator(alpha=0.01, delta=0.1, grid=fixed_grid(50, 0.5, 1.0)).calibrate(
        confidence, pred, human, names=["toy-judge"])
    assert calibrator.threshold_ == float("inf")
    return calibrator.certificate("sha256:toy", confidence_names=["conf_simulated"]), \
        (confidence, pred, human)


@pytest.fixture(scope="module")
def cascade():
    """Two judges, cheapest first; the second is more accurate."""
    rng = np.random.default_rng(2)
    n = 800
    human = np.where(rng.random(n) < 0.5, "a", "b").astype(object)
    flip = {"a": "b", "b": "a"}
    stages = []
    for name, skill in (("small", 0.5), ("large", 0.2)):
        confidence = rng.uniform(0.5, 1.0, n)
        agree = rng.random(n) < confidence ** skill
        pred = np.array([h if ok else flip[h] for h, ok in zip(human, agree)], dtype=object)
        stages.append((name, confidence, pred))
    calibrator = CascadeCalibrator(alpha=0.12, delta=0.1, grid=fixed_grid(100, 0.5, 1.0)).calibrate(
        [c for _, c, _ in stages], [p for _, _, p in stages], human, names=[n for n, _, _ in stages])
    return calibrator.certificate("sha256:toy", confidence_names=["conf_marc", "conf_marc"]), stages, human
