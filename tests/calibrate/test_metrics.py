"""Metrics of a confidence measure against brute-force definitions."""

import numpy as np
import pytest

from marc_ray.calibrate import (aurc, auroc, expected_calibration_error, ranking_risk,
                                reliability_bins, risk_coverage_curve, selective_agreement)


def _data(seed=0, n_items=600, rounding=2):
    rng = np.random.default_rng(seed)
    confidence = np.round(rng.random(n_items), rounding)  # rounding makes ties
    agree = rng.random(n_items) < confidence
    return confidence, agree


def test_auroc_equals_pairwise_definition_with_half_ties():
    confidence, agree = _data()
    good, bad = confidence[agree], confidence[~agree]
    pairs = (good[:, None] > bad[None, :]) + 0.5 * (good[:, None] == bad[None, :])
    assert auroc(confidence, agree) == pytest.approx(pairs.mean(), abs=1e-12)
    assert ranking_risk(confidence, agree) == pytest.approx(1 - pairs.mean(), abs=1e-12)


def test_auroc_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    confidence, agree = _data(seed=1)
    assert auroc(confidence, agree) == pytest.approx(metrics.roc_auc_score(agree, confidence))


def test_auroc_extremes():
    assert auroc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    assert np.isnan(auroc([0.5, 0.7], [True, True]))


def test_risk_coverage_curve_matches_loop():
    confidence, agree = _data(seed=2)
    coverage, risk = risk_coverage_curve(confidence, agree)
    thresholds = np.unique(confidence)[::-1]
    assert coverage.size == thresholds.size and coverage[-1] == 1.0
    for t, c, r in zip(thresholds, coverage, risk):
        accepted = confidence >= t
        assert c == pytest.approx(accepted.mean())
        assert r == pytest.approx(np.mean(~agree[accepted]))


def test_aurc_without_ties_is_mean_selective_risk():
    rng = np.random.default_rng(3)
    confidence = rng.random(500)
    agree = rng.random(500) < confidence
    order = np.argsort(-confidence)
    risks = np.cumsum(~agree[order]) / np.arange(1, 501)
    assert aurc(confidence, agree) == pytest.approx(risks.mean())
    # a perfect ranking has the smallest AURC
    perfect = np.where(agree, 1.0, 0.0) + rng.random(500) * 0.01
    assert aurc(perfect, agree) < aurc(confidence, agree)


def test_reliability_and_ece_by_hand():
    confidence = np.array([0.05, 0.15, 0.15, 0.95, 0.95, 0.95, 0.95])
    agree = np.array([False, False, True, True, True, True, False])
    bins = reliability_bins(confidence, agree, n_bins=10)
    assert bins.count.tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 4]
    assert bins.agreement[1] == 0.5 and bins.agreement[9] == 0.75
    assert np.isnan(bins.mean_confidence[5])
    expected = (1 * 0.05 + 2 * abs(0.5 - 0.15) + 4 * abs(0.75 - 0.95)) / 7
    assert expected_calibration_error(confidence, agree, n_bins=10) == pytest.approx(expected)
    assert reliability_bins([1.0], [True], 4).count.tolist() == [0, 0, 0, 1]  # 1.0 in the last bin


def test_selective_agreement():
    confidence = np.array([0.9, 0.8, 0.7, 0.6])
    agree = np.array([True, False, True, True])
    assert selective_agreement(confidence, agree, 0.75) == (0.5, 0.5)
    agreement, coverage = selective_agreement(confidence, agree, 0.95)
    assert np.isnan(agreement) and coverage == 0.0


@pytest.mark.parametrize("function", [auroc, aurc, risk_coverage_curve, expected_calibration_error])
def test_input_errors(function):
    with pytest.raises(ValueError, match="differ in length"):
        function([0.1, 0.2], [True])
    with pytest.raises(ValueError, match="NaN or infinite"):
        function([0.1, np.nan], [True, False])
    with pytest.raises(ValueError, match="booleans"):
        function([0.1, 0.2], [2, 3])
    with pytest.raises(ValueError, match="no items"):
        function([], [])
