"""The test design chosen on training rows (calibrate.design): the start rule's arithmetic, the
grid's stability, cascades that keep what their judges give, and the validity of the whole
design-then-calibrate procedure over seeded repetitions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from marc_ray.calibrate import SelectiveCalibrator
from marc_ray.calibrate.bounds import clopper_pearson_upper, max_disagreements, min_n_to_pass
from marc_ray.calibrate.design import (design_and_calibrate, design_cascade, design_grid,
                                       design_validity, min_n_for_pass, pass_probability,
                                       predictive_pass_probability)
from marc_ray.calibrate.generated import piled_up_judges

ALPHA, DELTA = 0.15, 0.1


def piled_up(n_items: int, seed: int, prefix: str, quality=(0.80, 0.88, 0.95)) -> dict:
    """Judges whose confidences pile up near 1 (``calibrate.generated``, as the benchmark)."""
    return piled_up_judges(n_items, seed, prefix=prefix, quality=quality)


def judge(data: dict, j: int) -> dict:
    return {k: (v[:, [j]] if k in ("confidence", "pred") else v) for k, v in data.items()}


def test_pass_probability_is_the_binomial_tail_at_the_largest_passing_k():
    n = np.array([10, 40, 100, 300])
    k_star = max_disagreements(n, ALPHA, DELTA)
    assert k_star[0] == -1  # below the minimum n nothing passes
    assert pass_probability(10, 0.0, ALPHA, DELTA) == 0.0
    for size, k in zip(n[1:], k_star[1:]):
        assert clopper_pearson_upper(k, size, DELTA) <= ALPHA < clopper_pearson_upper(k + 1, size, DELTA)
        assert pass_probability(size, 0.05, ALPHA, DELTA) == pytest.approx(binom.cdf(k, size, 0.05))
    # many training rows: the beta-binomial prediction tends to the binomial one
    assert predictive_pass_probability(300, 5_000, 100_000, ALPHA, DELTA) == pytest.approx(
        pass_probability(300, 0.05, ALPHA, DELTA), abs=0.01)
    # few training rows with no disagreement do not promise a sure pass
    assert predictive_pass_probability(40, 0, 5, ALPHA, DELTA) < 0.6


def test_min_n_for_pass_is_a_stricter_minimum_n_rule():
    floor = min_n_to_pass(ALPHA, DELTA)
    assert min_n_for_pass(ALPHA, DELTA, 0.0, 0.5) == floor  # no disagreement: the floor itself
    needed = min_n_for_pass(ALPHA, DELTA, ALPHA / 2, 0.9)
    assert needed > floor and pass_probability(needed, ALPHA / 2, ALPHA, DELTA) >= 0.9
    assert pass_probability(needed - 1, ALPHA / 2, ALPHA, DELTA) < 0.9
    with pytest.raises(ValueError, match="prior disagreement rate"):
        min_n_for_pass(ALPHA, DELTA, ALPHA)


def test_the_start_is_where_the_training_rows_predict_a_likely_pass():
    train = piled_up(600, 0, "t")
    agree = train["pred"][:, 2] == train["human_label"]
    design = design_grid(ALPHA, DELTA, 250, train_confidence=train["confidence"][:, 2],
                         train_agree=agree, train_ids=train["ids"], n_grid=200)
    assert design.source == "training rows" and design.grid.kind == "quantile"
    assert design.predicted_pass >= 0.99 and design.start == design.grid[0]
    full = np.quantile(train["confidence"][:, 2], np.linspace(0, 1, 202)[1:-1])
    assert (full > design.start).sum() > 0  # points above the start are never tested
    assert design.grid[-1] == 0.0  # the range's low end closes the grid
    assert design.record()["rows"]["count"] == 600 and len(design.record()["rows"]["digest"]) == 64
    # a judge no point of which is predicted to pass that likely starts at its best chance
    middle = design_grid(ALPHA, DELTA, 250, train_confidence=train["confidence"][:, 1],
                         train_agree=train["pred"][:, 1] == train["human_label"], n_grid=200)
    assert middle.predicted_pass < 0.99 and middle.record()["rows"]["digest"] is None
    prior = design_grid(ALPHA, DELTA, 250, n_grid=200)
    assert prior.source == "fixed grid, prior rate" and prior.min_n == min_n_for_pass(ALPHA, DELTA, ALPHA / 2, 0.99)


def test_a_designed_grid_built_from_calibration_rows_is_refused():
    data = piled_up(400, 1, "same")
    with pytest.raises(ValueError, match="quantile grid was built from"):
        design_and_calibrate(judge(data, 2), judge(data, 2), ALPHA, DELTA)


def test_coverage_hardly_moves_between_200_and_2000_grid_points():
    fixed, designed = {200: [], 2000: []}, {200: [], 2000: []}
    for seed in range(25):
        train, calibration = judge(piled_up(500, seed, "t"), 1), judge(piled_up(250, seed + 1000, "c"), 1)
        for n_grid in (200, 2000):
            fixed[n_grid].append(SelectiveCalibrator(alpha=ALPHA, delta=DELTA, n_grid=n_grid).calibrate(
                calibration["confidence"][:, 0], calibration["pred"][:, 0], calibration["human_label"]).coverage_)
            designed[n_grid].append(design_and_calibrate(train, calibration, ALPHA, DELTA,
                                                         n_grid=n_grid)[0].coverage_)
    # the fixed grid's first tiny slice fails by chance on the fine grid (the problem) ...
    assert np.mean(fixed[200]) - np.mean(fixed[2000]) > 0.05
    # ... the designed start does not depend on the grid's resolution
    assert abs(np.mean(designed[200]) - np.mean(designed[2000])) <= 0.05


def test_a_designed_cascade_keeps_its_best_judges_coverage_at_a_lower_cost():
    costs = [1.0, 3.0, 30.0]
    cascade, strongest, cost, strongest_cost = [], [], [], []
    for seed in range(20):
        train = piled_up(500, seed, "t", quality=(0.80, 0.93, 0.95))
        calibration = piled_up(250, seed + 1000, "c", quality=(0.80, 0.93, 0.95))
        calibrator, chosen = design_and_calibrate(train, calibration, ALPHA, DELTA, costs=costs)
        cascade.append(calibrator.coverage_)
        cost.append(chosen.expected_cost)
        alone = [design_and_calibrate(judge(train, j), judge(calibration, j), ALPHA, DELTA)[0].coverage_
                 for j in range(3)]
        strongest.append(max(alone))
    assert np.mean(cascade) >= 0.9 * np.mean(strongest)
    assert np.mean(cost) < 30.0  # the best judge alone costs 30 per item


def test_design_cascade_records_its_choices_and_validates_its_rules():
    train = piled_up(400, 3, "t")
    agree = train["pred"] == train["human_label"][:, None]
    design = design_cascade(train["confidence"], agree, np.ones_like(agree), 250, ALPHA, DELTA,
                            delta_split="optimised")
    record = design.record(["weak", "middle", "strong"])
    assert sum(record["delta_weights"]) == pytest.approx(1.0)
    assert set(record["order"]) | set(record["dropped"]) == {"weak", "middle", "strong"}
    assert record["delta_split_rule"] == "optimised" and len(record["predicted_coverage_alone"]) == 3
    with pytest.raises(ValueError, match="order 'cost' needs a cost"):
        design_cascade(train["confidence"], agree, np.ones_like(agree), 250, ALPHA, DELTA, order="cost")
    with pytest.raises(ValueError, match="delta_split must be one of"):
        design_cascade(train["confidence"], agree, np.ones_like(agree), 250, ALPHA, DELTA, delta_split="x")


@pytest.mark.slow
@pytest.mark.parametrize("design", ["split", "population"])
def test_the_whole_design_then_calibrate_procedure_keeps_the_guarantee(design):
    """Success >= 1 - delta (within binomial slack) over seeded repetitions of the whole
    procedure: a fresh design part, the design chosen on it, calibration, the check."""
    data = piled_up(800, 7, "i", quality=(0.86, 0.95))
    repetitions = 300
    result = design_validity(data, ALPHA, DELTA, repetitions=repetitions, design=design,
                             costs=[1.0, 10.0], seed=11)
    slack = 3 * np.sqrt(DELTA * (1 - DELTA) / repetitions)
    assert result["success_rate"] >= 1 - DELTA - slack
    assert result["mean_coverage"] > 0.3  # it certifies something, not vacuously safe


def test_a_judge_that_cannot_pass_is_predicted_to_certify_nothing():
    """Regression: a start less likely to pass than to fail predicts nothing (it once wrapped
    around to the last grid point and predicted full coverage, so the cascade design kept a
    judge that certifies nothing and dropped the one that certifies)."""
    from marc_ray.calibrate.design import predicted_coverage

    rng = np.random.default_rng(0)
    confidence = rng.choice([0.5, 0.75, 1.0], size=350, p=[0.3, 0.05, 0.65])
    agree = rng.random(350) < 0.58  # far above alpha's disagreement everywhere
    assert predicted_coverage(confidence, agree, 260, 0.25, 0.1 / 3) == (0.0, float("inf"))


def test_design_cascade_computes_each_stage_grid_once(monkeypatch):
    """The δ splits of a subset share their first stage's rows (and later stages mostly do):
    its quantile grid and counts are computed once, and the prediction is the one
    predicted_coverage gives on those rows."""
    from marc_ray.calibrate import design as design_module

    train = piled_up(1500, 4, "t", quality=(0.85, 0.93, 0.95))
    agree = train["pred"] == train["human_label"][:, None]
    built = []
    real_grid = design_module.quantile_grid
    monkeypatch.setattr(design_module, "quantile_grid",
                        lambda *a, **k: built.append(1) or real_grid(*a, **k))
    chosen = design_cascade(train["confidence"], agree, np.ones_like(agree), 400, ALPHA, DELTA,
                            delta_split="optimised")
    simulated_stages = sum(len(s) * len(design_module._simplex(len(s)))
                           for s in ([0], [1], [2], [0, 1], [0, 2], [1, 2], [0, 1, 2]))
    assert len(built) < simulated_stages / 20  # 36 splits of 3 stages, 9 of 2, ... once each
    for j in range(3):
        assert chosen.rule["predicted_coverage_alone"][j] == design_module.predicted_coverage(
            train["confidence"][:, j], agree[:, j], 400, ALPHA, DELTA)[0]
