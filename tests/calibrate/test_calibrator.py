"""SelectiveCalibrator: results, abstention, several alphas, tie policy, certificate, errors."""

import numpy as np
import pytest
from scipy import stats

from marc_ray.calibrate import (PROCEDURES, NotCalibratedError, SelectiveCalibrator, fixed_grid,
                                min_n_to_pass)
from marc_ray.contracts import Certificate


def _data(n_items=4000, seed=0, tie_share=0.0):
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n_items)
    agree = rng.random(n_items) < confidence
    pred = rng.choice(np.array(["a", "b"], dtype=object), n_items)
    human = np.where(agree, pred, np.where(pred == "a", "b", "a")).astype(object)
    human[rng.random(n_items) < tie_share] = "tie"
    return confidence, pred, human


def test_result_attributes_are_consistent():
    confidence, pred, human = _data()
    calibrator = SelectiveCalibrator(alpha=0.1, delta=0.1).calibrate(confidence, pred, human)
    assert calibrator.threshold_ in set(fixed_grid(200).tolist())
    accepted = confidence >= calibrator.threshold_
    disagree = pred != human
    assert calibrator.n_ == accepted.sum()
    assert calibrator.k_ == (accepted & disagree).sum()
    assert calibrator.upper_bound_ == pytest.approx(
        stats.beta.ppf(0.9, calibrator.k_ + 1, calibrator.n_ - calibrator.k_))
    assert calibrator.upper_bound_ <= 0.1
    assert calibrator.coverage_ == pytest.approx(accepted.mean())
    assert calibrator.agreement_ == pytest.approx(1 - calibrator.k_ / calibrator.n_)
    assert np.array_equal(calibrator.accept(confidence), accepted)
    # the next threshold down in the grid failed: the scan stopped for a reason
    records = calibrator.results_[0].records
    index = calibrator.results_[0].index
    assert records["passed"][index] and not records["passed"][index + 1]
    assert calibrator.results_[0].upper_bounds()[index + 1] > 0.1


def test_records_recomputed_with_scipy():
    confidence, pred, human = _data(seed=1)
    calibrator = SelectiveCalibrator(alpha=0.15, delta=0.05, n_grid=50).calibrate(confidence, pred, human)
    result = calibrator.results_[0]
    records = result.records
    disagree = pred != human
    for t, n, k, bound, p_value in zip(records["threshold"], records["n"], records["k"],
                                       result.upper_bounds(), records["p_value"]):
        accepted = confidence >= t
        assert n == accepted.sum() and k == (accepted & disagree).sum()
        expected = 1.0 if n == 0 or k == n else stats.beta.ppf(0.95, k + 1, n - k)
        assert bound == pytest.approx(expected)
        assert p_value == pytest.approx(stats.binom.cdf(k, n, 0.15) if n else 1.0)
        assert (bound <= 0.15) == (p_value <= 0.05)


def test_abstention_when_top_threshold_fails():
    """The most confident items are wrong: nothing may be accepted, never a fallback."""
    confidence, pred, human = _data(seed=2)
    top = confidence >= np.quantile(confidence, 0.9)
    human = human.copy()
    human[top] = np.where(pred[top] == "a", "b", "a")
    calibrator = SelectiveCalibrator(alpha=0.1, delta=0.1).calibrate(confidence, pred, human)
    assert calibrator.threshold_ == np.inf
    assert calibrator.coverage_ == 0.0
    assert calibrator.n_ == 0 and calibrator.k_ == 0 and calibrator.upper_bound_ == 1.0
    assert np.isnan(calibrator.agreement_)
    assert not calibrator.accept(np.array([0.99, 1.0])).any()
    assert "every item is escalated" in calibrator.results_[0].sentence()
    certificate = calibrator.certificate(data_hash="sha256:test")
    data = certificate.to_dict()
    assert data["stages"][0]["threshold"] is None and data["stages"][0]["abstains"] is True
    assert data["stages"][0]["threshold_status"] == "none passed"
    assert data["coverage"] == 0.0 and data["agreement_on_accepted"] is None


def test_several_alphas_equal_separate_runs():
    confidence, pred, human = _data(seed=3)
    alphas = [0.05, 0.1, 0.2]
    multi = SelectiveCalibrator(alpha=alphas, delta=0.1).calibrate(confidence, pred, human)
    assert multi.threshold_.shape == (3,)
    for position, alpha in enumerate(alphas):
        single = SelectiveCalibrator(alpha=alpha, delta=0.1).calibrate(confidence, pred, human)
        assert multi.threshold_[position] == single.threshold_
        assert multi.n_[position] == single.n_ and multi.k_[position] == single.k_
        assert multi.result(alpha).coverage == single.coverage_
        assert np.array_equal(multi.accept(confidence, alpha=alpha), single.accept(confidence))
    assert multi.accept(confidence).shape == (3, confidence.size)
    assert np.all(np.diff(multi.threshold_) <= 0)  # looser alpha, lower threshold here
    with pytest.raises(ValueError, match="several alphas were calibrated"):
        multi.certificate(data_hash="x")
    with pytest.raises(ValueError, match="alpha=0.3 was not calibrated"):
        multi.result(0.3)
    assert multi.certificate(data_hash="x", alpha=0.2).alpha == 0.2


def test_tie_policy():
    confidence, pred, human = _data(seed=4, tie_share=0.1)
    drop = SelectiveCalibrator(tie_policy="drop").calibrate(confidence, pred, human)
    disagree = SelectiveCalibrator(tie_policy="disagree").calibrate(confidence, pred, human)
    ties = int((human == "tie").sum())
    assert drop.n_ties_dropped_ == ties and disagree.n_ties_dropped_ == 0
    assert drop.n_used_ == confidence.size - ties
    # ties counted as disagreements can only make every test harder
    assert disagree.threshold_ >= drop.threshold_
    # coverage is over every calibration item, ties included
    assert drop.coverage_ == pytest.approx(np.mean(confidence >= drop.threshold_))


def test_calibrate_agreement_equals_calibrate():
    confidence, pred, human = _data(seed=5)
    a = SelectiveCalibrator().calibrate(confidence, pred, human)
    b = SelectiveCalibrator().calibrate_agreement(confidence, pred == human)
    assert a.threshold_ == b.threshold_ and a.n_ == b.n_ and a.k_ == b.k_


@pytest.mark.parametrize("procedure", sorted(PROCEDURES))
def test_every_procedure_certifies_its_threshold(procedure):
    confidence, pred, human = _data(seed=6)
    calibrator = SelectiveCalibrator(procedure=procedure).calibrate(confidence, pred, human)
    result = calibrator.results_[0]
    assert result.procedure == procedure
    assert np.isfinite(calibrator.threshold_)
    level = result.records["level"][result.index]
    expected = stats.beta.ppf(1 - level, result.k + 1, result.n - result.k)
    assert calibrator.upper_bound_ == pytest.approx(expected) and calibrator.upper_bound_ <= 0.1
    if procedure == "bonferroni":
        assert level == pytest.approx(0.1 / 200)


def test_bonferroni_more_conservative_than_fixed_sequence_on_monotone_data():
    for seed in range(5):
        confidence, pred, human = _data(seed=seed)
        thresholds = {p: SelectiveCalibrator(procedure=p).calibrate(confidence, pred, human).threshold_
                      for p in PROCEDURES}
        assert thresholds["bonferroni"] >= thresholds["holm"]
        assert thresholds["bonferroni"] >= thresholds["fixed_sequence"]


def test_min_n_rule_recorded():
    confidence, pred, human = _data(seed=7)
    calibrator = SelectiveCalibrator(alpha=0.1, delta=0.1).calibrate(confidence, pred, human)
    result = calibrator.results_[0]
    assert result.min_n == min_n_to_pass(0.1, 0.1) == 22
    records = result.records
    assert all(not t for t, n in zip(records["tested"], records["n"]) if n < 22)
    fixed = SelectiveCalibrator(min_n=500).calibrate(confidence, pred, human)
    assert fixed.results_[0].min_n == 500 and fixed.n_ >= 500


def test_certificate_contents_round_trip(tmp_path):
    confidence, pred, human = _data(seed=8)
    calibrator = SelectiveCalibrator(alpha=0.1, delta=0.05).calibrate(confidence, pred, human,
                                                                      names=["smollm2"])
    certificate = calibrator.certificate("sha256:abc", confidence_names=["conf_simulated"],
                                         model_hash="sha256:model")
    path = tmp_path / "certificate.json"
    certificate.write(path)
    back = Certificate.read(path)
    assert back.alpha == 0.1 and back.delta == 0.05 and back.procedure == "fixed_sequence"
    assert back.grid["kind"] == "fixed" and back.grid["n_points"] == 200
    stage = back.stages[0]
    assert stage["name"] == "smollm2" and stage["confidence"] == "conf_simulated"
    assert stage["threshold"] == calibrator.threshold_ and stage["n"] == calibrator.n_
    assert stage["k"] == calibrator.k_ and stage["upper_bound"] == calibrator.upper_bound_
    assert back.coverage == calibrator.coverage_ and back.n_calibration == confidence.size
    assert back.data_hash == "sha256:abc" and back.model_hash == "sha256:model"
    assert any("representative" in a for a in back.assumptions)
    assert back.extra["min_n"] == min_n_to_pass(0.1, 0.05) == 29
    table = back.extra["per_threshold"]
    assert len(table["n"]) == len(table["upper_bound"]) == 200
    assert table["upper_bound"][calibrator.results_[0].index] == calibrator.upper_bound_


def test_not_calibrated_errors():
    calibrator = SelectiveCalibrator()
    with pytest.raises(NotCalibratedError, match="not calibrated yet: call calibrate"):
        calibrator.accept([0.9])
    with pytest.raises(AttributeError, match="not calibrated yet"):
        calibrator.certificate(data_hash="x")


def test_constructor_stores_parameters_unmodified():
    grid = [0.9, 0.8]
    calibrator = SelectiveCalibrator(alpha=[0.1, 0.2], delta=0.05, grid=grid, n_grid=7,
                                     procedure="holm", min_n=3, tie_policy="disagree")
    assert calibrator.alpha == [0.1, 0.2] and calibrator.grid is grid and calibrator.n_grid == 7
    assert calibrator.procedure == "holm" and calibrator.min_n == 3
    SelectiveCalibrator(alpha=2.0)  # no validation before calibrate (scikit-learn convention)


@pytest.mark.parametrize("params, match", [
    (dict(alpha=0.0), "alpha must be a number in"),
    (dict(alpha=1.0), "alpha must be a number in"),
    (dict(alpha=[0.1, 1.2]), "alpha must be a number in"),
    (dict(alpha=[]), "alpha is empty"),
    (dict(delta=0.0), "delta must be a number in"),
    (dict(delta=1.5), "delta must be a number in"),
    (dict(procedure="bh"), "procedure must be one of"),
    (dict(tie_policy="half"), "tie_policy must be one of"),
    (dict(min_n=-3), "min_n must be 'auto' or a positive integer"),
    (dict(grid="quantiles"), "grid must be None, 'fixed'"),
])
def test_parameter_errors(params, match):
    confidence, pred, human = _data(n_items=100)
    with pytest.raises(ValueError, match=match):
        SelectiveCalibrator(**params).calibrate(confidence, pred, human)


def test_input_errors():
    confidence, pred, human = _data(n_items=100)
    with pytest.raises(ValueError, match="must have the same length"):
        SelectiveCalibrator().calibrate(confidence[:-1], pred, human)
    bad = confidence.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN or \\+inf values \\(first at position 3\\)"):
        SelectiveCalibrator().calibrate(bad, pred, human)
    with pytest.raises(ValueError, match="no calibration items"):
        SelectiveCalibrator().calibrate(confidence, pred, np.full(100, "tie", dtype=object))
    with pytest.raises(ValueError, match="agree must hold booleans"):
        SelectiveCalibrator().calibrate_agreement(confidence, np.full(100, 2))
