"""Cascades: one stage equals plain calibration; later stages see only what was escalated."""

import numpy as np
import pytest

from marc_ray.calibrate import (PROCEDURES, CascadeCalibrator, NotCalibratedError, SelectiveCalibrator,
                                fixed_grid)


def _two_judges(n_items=5000, seed=0):
    rng = np.random.default_rng(seed)
    human = rng.choice(np.array(["a", "b"], dtype=object), n_items)
    other = np.where(human == "a", "b", "a").astype(object)
    stages = []
    for name, strength in (("small", 0.75), ("large", 0.9)):
        confidence = rng.uniform(0.5, 1.0, n_items)
        correct = rng.random(n_items) < np.clip(confidence * strength / 0.75 - 0.1, 0, 1)
        stages.append((name, confidence, np.where(correct, human, other).astype(object)))
    return stages, human


def _fit(calibrator, stages, human, **options):
    """The calibrators' one ``calibrate``: per-judge columns, cheapest first, and their names."""
    return calibrator.calibrate([c for _, c, _ in stages], [p for _, _, p in stages], human,
                                names=[n for n, _, _ in stages], **options)


@pytest.mark.parametrize("procedure", sorted(PROCEDURES))
def test_one_stage_cascade_equals_plain_calibration(procedure):
    stages, human = _two_judges(seed=1)
    name, confidence, pred = stages[0]
    cascade = _fit(CascadeCalibrator(alpha=0.1, delta=0.1, procedure=procedure), [stages[0]], human)
    plain = SelectiveCalibrator(alpha=0.1, delta=0.1, procedure=procedure).calibrate(
        confidence, pred, human, names=[name])
    result = cascade.stages_[0]["result"]
    assert cascade.thresholds_[0] == plain.threshold_
    assert (result.n, result.k, result.upper_bound) == (plain.n_, plain.k_, plain.upper_bound_)
    assert cascade.coverage_ == pytest.approx(plain.coverage_)
    assert cascade.deltas_.tolist() == [0.1]
    assert np.array_equal(cascade.route([confidence], [pred]).stage == 0, plain.accept(confidence, pred=pred))
    assert np.array_equal(plain.route(confidence, pred).stage, cascade.route([confidence], [pred]).stage)
    certificate = cascade.certificate(data_hash="h", confidence_names=["conf"]).to_dict()
    single = plain.certificate(data_hash="h", confidence_names=["conf"]).to_dict()
    assert certificate["stages"][0]["name"] == single["stages"][0]["name"] == name
    for key in ("threshold", "n", "k", "upper_bound", "coverage", "agreement", "delta"):
        assert certificate["stages"][0][key] == single["stages"][0][key]


def test_two_stages_each_on_what_earlier_left():
    stages, human = _two_judges(seed=2)
    cascade = _fit(CascadeCalibrator(alpha=0.1, delta=0.1), stages, human)
    assert cascade.deltas_.tolist() == [0.05, 0.05]
    first = SelectiveCalibrator(alpha=0.1, delta=0.05).calibrate(stages[0][1], stages[0][2], human)
    assert cascade.thresholds_[0] == first.threshold_
    left = ~first.accept(stages[0][1])
    second = SelectiveCalibrator(alpha=0.1, delta=0.05).calibrate(stages[1][1][left], stages[1][2][left],
                                                                   human[left])
    assert cascade.thresholds_[1] == second.threshold_
    assert cascade.stages_[1]["n_seen"] == left.sum()

    route = cascade.route([stages[0][1], stages[1][1]], [stages[0][2], stages[1][2]]).stage
    expected = np.where(~left, 0, np.where(stages[1][1] >= second.threshold_, 1, -1))
    assert np.array_equal(route, expected)
    assert cascade.route_counts_.tolist() == [int((route == s).sum()) for s in (0, 1, -1)]
    assert cascade.coverage_ == pytest.approx(np.mean(route >= 0))
    final_pred = np.where(route == 0, stages[0][2], stages[1][2])
    assert cascade.agreement_ == pytest.approx(np.mean(final_pred[route >= 0] == human[route >= 0]))
    assert cascade.coverage_ > first.coverage_  # the second judge adds coverage

    certificate = cascade.certificate(data_hash="h", confidence_names=["c1", "c2"])
    assert certificate.delta_split == "equal: delta / 2 per stage"
    assert [s["delta"] for s in certificate.stages] == [0.05, 0.05]
    assert [s["name"] for s in certificate.stages] == ["small", "large"]
    assert certificate.extra["route_counts"] == cascade.route_counts_.tolist()


def test_weighted_delta_split():
    stages, human = _two_judges(seed=3)
    cascade = _fit(CascadeCalibrator(delta=0.1, delta_split=[3, 1]), stages, human)
    assert cascade.deltas_ == pytest.approx([0.075, 0.025])
    assert "weights" in cascade.certificate(data_hash="h").delta_split


def test_cascade_guarantee_holds_in_repetition():
    """Over 300 fresh calibration sets, the whole cascade's agreement on a large fresh test set
    reaches 1 - alpha in at least 1 - delta of them (minus binomial slack)."""
    test_stages, test_human = _two_judges(n_items=50_000, seed=10)
    test_confidence = [s[1] for s in test_stages]
    test_pred = [s[2] for s in test_stages]
    test_agree = [s[2] == test_human for s in test_stages]
    failures = 0
    repetitions = 300
    for seed in range(repetitions):
        stages, human = _two_judges(n_items=1500, seed=1000 + seed)
        cascade = _fit(CascadeCalibrator(alpha=0.1, delta=0.1), stages, human)
        route = cascade.route(test_confidence, test_pred).stage
        if (route >= 0).any():
            agree = np.where(route == 0, test_agree[0], test_agree[1])[route >= 0]
            failures += np.mean(~agree) > 0.1 + 0.005  # 0.005: the test set's own noise
    assert failures / repetitions <= 0.1 + 3 * np.sqrt(0.09 / repetitions)


@pytest.mark.parametrize("params, stages_fn, match", [
    (dict(delta_split="half"), None, "delta_split must be 'equal' or a sequence"),
    (dict(delta_split=[1, 0]), None, "delta_split weights must be 2 positive numbers"),
    (dict(delta_split=[1]), None, "delta_split weights must be 2 positive numbers"),
    (dict(alpha=[0.1, 0.2]), None, "a cascade takes one alpha"),
    (dict(delta=1.0), None, "delta must be a number in"),
    (dict(), lambda s: [(s[0][0], s[0][1][:-1], s[0][2])], "must have the same length"),
    (dict(), lambda s: [s[0], ("small", s[1][1], s[1][2])], "must name each of the 2 judges once"),
])
def test_errors(params, stages_fn, match):
    stages, human = _two_judges(n_items=300)
    with pytest.raises(ValueError, match=match):
        _fit(CascadeCalibrator(**params), stages if stages_fn is None else stages_fn(stages), human)
    with pytest.raises(ValueError, match="at least one stage"):
        CascadeCalibrator().calibrate(np.empty((300, 0)), np.empty((300, 0), dtype=object), human)


def test_route_errors():
    with pytest.raises(NotCalibratedError, match="not calibrated yet"):
        CascadeCalibrator().route([[0.9]], [["a"]])
    stages, human = _two_judges(n_items=500)
    cascade = _fit(CascadeCalibrator(), stages, human)
    with pytest.raises(ValueError, match="one confidence and one pred array per stage"):
        cascade.route([stages[0][1]], [stages[0][2]])


def test_stage_with_nothing_left_accepts_nothing():
    """If the first judge takes every labelled item, the second has nothing to calibrate on."""
    n_items = 400
    human = np.array(["a"] * 300 + ["tie"] * 100, dtype=object)
    confident = np.where(np.arange(n_items) < 300, 0.99, 0.1)
    stages = [("first", confident, np.full(n_items, "a", dtype=object)),
              ("second", np.full(n_items, 0.99), np.full(n_items, "a", dtype=object))]
    grid = fixed_grid(51, 0.5, 1.0)  # the tie items (confidence 0.1) stay below every threshold
    cascade = _fit(CascadeCalibrator(alpha=0.1, delta=0.1, grid=grid), stages, human)
    assert cascade.thresholds_[0] == 0.5 and np.isinf(cascade.thresholds_[1])
    assert cascade.stages_[1]["n_seen"] == 100 and cascade.stages_[1]["result"] is None
    stage = cascade.certificate(data_hash="h").stages[1]
    assert stage["abstains"] and stage["threshold"] == np.inf


def test_items_without_a_verdict_move_on_and_are_never_dropped():
    """A stage with no verdict on an item never accepts it; the item is calibrated at the next
    stage (as apply routes it) and counts in the coverage, instead of leaving the calibration set."""
    stages, human = _two_judges(seed=5)
    rng = np.random.default_rng(5)
    silent_small = rng.random(human.size) < 0.2    # the small judge could not read these
    silent_large = rng.random(human.size) < 0.1
    (small, conf_small, pred_small), (large, conf_large, pred_large) = stages
    conf_small, pred_small = conf_small.copy(), pred_small.copy()
    conf_small[silent_small], pred_small[silent_small] = np.nan, None
    pred_large = pred_large.copy()
    pred_large[silent_large] = None               # a confidence without a verdict: still no
    cascade = CascadeCalibrator(alpha=0.1, delta=0.1).calibrate(
        [conf_small, conf_large], [pred_small, pred_large], human, names=[small, large])

    # stage 1 = plain calibration with the silent items present but never accepted
    first = SelectiveCalibrator(alpha=0.1, delta=0.05).calibrate(conf_small, pred_small, human)
    with_verdict = SelectiveCalibrator(alpha=0.1, delta=0.05).calibrate(
        conf_small[~silent_small], pred_small[~silent_small], human[~silent_small])
    assert cascade.thresholds_[0] == first.threshold_ == with_verdict.threshold_
    assert (first.n_, first.k_) == (with_verdict.n_, with_verdict.k_)  # silent items add no n, k
    assert first.coverage_ == pytest.approx(with_verdict.coverage_ * (~silent_small).mean())
    assert first.n_calibration_ == human.size

    accepted_first = ~silent_small & (conf_small >= first.threshold_)
    assert cascade.stages_[1]["n_seen"] == int((~accepted_first).sum())  # the silent ones included
    route = cascade.route_counts_
    assert route.sum() == human.size
    decided_by_large = ~accepted_first & ~silent_large & (conf_large >= cascade.thresholds_[1])
    assert route[1] == int(decided_by_large.sum())
    assert (silent_small & decided_by_large).any()  # the large judge decides what small could not


def test_verdicts_must_be_a_b_or_none():
    human = np.array(["a", "b", "a"], dtype=object)
    with pytest.raises(ValueError, match=r"pred must be 'a', 'b' or None \(no verdict\); got 'A' at position 1"):
        SelectiveCalibrator().calibrate([0.9, 0.8, 0.7], ["a", "A", "b"], human)
    with pytest.raises(ValueError, match="NaN or \\+inf values .* give them pred=None"):
        SelectiveCalibrator().calibrate([0.9, np.nan, 0.7], ["a", "b", "b"], human)
