"""Threshold grids: data independence, counting, and refusing grids read off the scores."""

import numpy as np
import pytest

from marc_ray.calibrate import (SelectiveCalibrator, ThresholdGrid, counts_at_thresholds,
                                fixed_grid, quantile_grid)


def test_fixed_grid_descending_with_endpoints():
    grid = fixed_grid(n_points=11, low=0.5, high=1.0)
    assert grid.kind == "fixed"
    assert grid.shape == (11,)
    assert grid[0] == 1.0 and grid[-1] == 0.5
    assert np.all(np.diff(grid) < 0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_points=0), "positive integer"),
    (dict(n_points=2.5), "positive integer"),
    (dict(n_points=10, low=1.0, high=0.5), "low < high"),
])
def test_fixed_grid_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fixed_grid(**kwargs)


def test_quantile_grid_from_disjoint_split():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.5, 1.0, 1000)
    grid = quantile_grid(scores, n_points=9, ids=[f"train{i}" for i in range(1000)])
    assert grid.kind == "quantile" and grid.size == 9
    assert np.all(np.diff(grid) < 0)
    assert np.allclose(np.sort(grid), np.quantile(scores, np.arange(1, 10) / 10))
    assert len(grid.source_ids) == 1000
    with pytest.raises(ValueError, match="needs scores from a disjoint split"):
        quantile_grid([], 5)


def test_user_grid_sorted_and_checked():
    grid = ThresholdGrid([0.2, 0.9, 0.5, 0.9])
    assert grid.tolist() == [0.9, 0.5, 0.2]
    with pytest.raises(ValueError, match="NaN or infinite"):
        ThresholdGrid([0.5, np.nan])
    with pytest.raises(ValueError, match="empty"):
        ThresholdGrid([])
    with pytest.raises(ValueError, match="grid kind must be one of"):
        ThresholdGrid([0.5], kind="magic")


def test_counts_match_a_loop_including_exact_ties():
    rng = np.random.default_rng(1)
    grid = fixed_grid(21, 0.0, 1.0)
    confidence = np.round(rng.random(3000), 2)  # many values equal to grid points
    agree = rng.random(3000) < confidence
    n, k = counts_at_thresholds(confidence, agree, grid)
    assert n.tolist() == [int((confidence >= t).sum()) for t in grid]
    assert k.tolist() == [int(((confidence >= t) & ~agree).sum()) for t in grid]


def test_counts_batched_equal_row_by_row():
    rng = np.random.default_rng(2)
    grid = fixed_grid(50)
    confidence = rng.random((7, 300))
    agree = rng.random((7, 300)) < 0.8
    n, k = counts_at_thresholds(confidence, agree, grid)
    for row in range(7):
        n_row, k_row = counts_at_thresholds(confidence[row], agree[row], grid)
        assert np.array_equal(n[row], n_row) and np.array_equal(k[row], k_row)


def _labelled(n_items=500, seed=3):
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n_items)
    agree = rng.random(n_items) < confidence
    pred = np.full(n_items, "a", dtype=object)
    return confidence, pred, np.where(agree, "a", "b").astype(object)


def test_refuses_grid_equal_to_calibration_scores():
    confidence, pred, human = _labelled()
    with pytest.raises(ValueError, match="occur among the calibration confidences"):
        SelectiveCalibrator(grid=confidence).calibrate(confidence, pred, human)


def test_refuses_grid_that_is_a_subset_of_calibration_scores():
    confidence, pred, human = _labelled()
    subset = np.sort(confidence)[::25]
    with pytest.raises(ValueError, match="voids the guarantee"):
        SelectiveCalibrator(grid=subset).calibrate(confidence, pred, human)


def test_refuses_quantile_grid_built_from_calibration_ids():
    confidence, pred, human = _labelled()
    ids = np.array([f"item{i}" for i in range(confidence.size)], dtype=object)
    grid = quantile_grid(confidence[:100], 20, ids=ids[:100])
    with pytest.raises(ValueError, match="quantile grid was built from 100 calibration item"):
        SelectiveCalibrator(grid=grid).calibrate(confidence, pred, human, ids=ids)


def test_accepts_disjoint_quantile_grid_and_declared_fixed_grid():
    confidence, pred, human = _labelled()
    other, _, _ = _labelled(seed=99)
    ids = [f"item{i}" for i in range(confidence.size)]
    grid = quantile_grid(other, 50, ids=[f"train{i}" for i in range(other.size)])
    calibrator = SelectiveCalibrator(grid=grid).calibrate(confidence, pred, human, ids=ids)
    assert calibrator.grid_.kind == "quantile"
    assert calibrator.threshold_ in set(grid.tolist()) | {np.inf}
    # rounded confidences may contain every point of a grid fixed in advance: declare it
    rounded = np.round(confidence, 2)
    declared = ThresholdGrid(np.round(np.linspace(0.99, 0.6, 40), 2), kind="fixed")
    assert np.isin(declared, rounded).all()
    SelectiveCalibrator(grid=declared).calibrate(rounded, pred, human)
    with pytest.raises(ValueError, match="kind='fixed'"):
        SelectiveCalibrator(grid=np.asarray(declared)).calibrate(rounded, pred, human)
