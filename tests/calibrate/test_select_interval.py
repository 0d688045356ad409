"""``confidence: auto`` says how far its predicted coverage can be trusted (issue 20, report item:
"auto shows its predicted coverage with an interval, and says when the validation part is too
small to predict")."""

import numpy as np

from marc_ray.calibrate import SelectiveCalibrator
from marc_ray.calibrate.select import choose_confidence


def _items(n, rng):
    confidence = rng.uniform(0.5, 1.0, n)
    agree = rng.random(n) < 0.2 + 0.8 * confidence  # agreement rises to 1 with confidence
    return confidence, agree


def test_a_small_validation_part_is_flagged_too_small_to_predict():
    """The measured case: 87 validation items, confidences piled up at 1, predicted a coverage
    of 0.989, and the certificate covered 0 (a threshold holding nearly every item passes or
    fails by chance). The point prediction stays high; the interval shows it may be 0."""
    rng = np.random.default_rng(3)
    confidence = np.where(rng.random(87) < 0.97, 1.0, rng.uniform(0.5, 0.9, 87))
    agree = rng.random(87) < 0.935
    record = choose_confidence({"conf_simulated": confidence}, agree, 0.1, 0.1, 200)
    assert record["scores"]["conf_simulated"]["predicted_coverage"] > 0.9
    low, high = record["predicted_coverage_interval"]
    assert low == 0.0 and high > 0.9
    assert record["too_small_to_predict"] is True
    assert "too small to predict" in record["note"]
    # fewer validation items than any threshold needs to pass: flagged whatever the interval
    few = choose_confidence({"c": confidence[:15]}, agree[:15], 0.1, 0.1, 200)
    assert few["too_small_to_predict"] is True and "fewer than the" in few["note"]


def test_a_large_validation_part_predicts_with_a_narrow_interval_that_holds():
    """Statistically: over seeded repetitions, the coverage a fresh calibration set certifies
    falls inside the predicted 1 - delta interval at least about 1 - delta of the time."""
    delta, alpha, n_calibration = 0.1, 0.15, 2000
    inside, narrow, repetitions = 0, 0, 60
    for seed in range(repetitions):
        rng = np.random.default_rng(100 + seed)
        confidence, agree = _items(2000, rng)
        record = choose_confidence({"c": confidence}, agree, alpha, delta, n_calibration)
        low, high = record["predicted_coverage_interval"]
        narrow += (not record["too_small_to_predict"]) and high - low < 0.3
        fresh_confidence, fresh_agree = _items(n_calibration, rng)
        calibrator = SelectiveCalibrator(alpha=alpha, delta=delta).calibrate_agreement(
            fresh_confidence, fresh_agree)
        inside += low - 1e-9 <= calibrator.coverage_ <= high + 1e-9
    # 1 - delta = 0.9 nominal; the bootstrap is approximate: allow three binomial sd below
    assert inside / repetitions >= 0.9 - 3 * np.sqrt(0.09 / repetitions)
    # most draws predict within 0.3; in about one in four the fixed sequence may stop on the grid's
    # top slice by chance, and the interval then rightly reaches 0 (measured: 45 of 60)
    assert narrow >= 0.6 * repetitions
