"""``confidence: auto``: the measure chosen on training data, and the guarantee after choosing."""

import numpy as np
import pyarrow as pa
import pytest

from marc_ray.calibrate import SelectiveCalibrator
from marc_ray.calibrate.select import (choose_confidence, choose_confidence_table,
                                       predicted_coverage, validity_study_auto)
from marc_ray.calibrate.validity import validity_study_from_agreement


def _population(n, seed):
    """Three measures of decreasing quality on one set of items."""
    rng = np.random.default_rng(seed)
    latent = rng.uniform(0, 1, n)
    agree = rng.random(n) < 0.55 + 0.44 * latent
    return {"weak": np.clip(latent + rng.normal(0, 0.6, n), 0, 1),
            "middle": np.clip(latent + rng.normal(0, 0.25, n), 0, 1),
            "good": np.clip(latent + rng.normal(0, 0.05, n), 0, 1)}, agree


def test_predicted_coverage_equals_a_calibration_on_the_items_themselves():
    scores, agree = _population(400, 0)
    coverage, threshold = predicted_coverage(scores["good"], agree, 0.1, 0.1, n_calibration=400)
    direct = SelectiveCalibrator(alpha=0.1, delta=0.1).calibrate_agreement(scores["good"], agree)
    assert threshold == direct.threshold_ and coverage == pytest.approx(direct.coverage_)


def test_the_better_ranker_is_chosen_and_the_record_is_complete():
    scores, agree = _population(600, 1)
    choice = choose_confidence(scores, agree, 0.1, 0.1, n_calibration=500)
    assert choice["choice"] == "good" and choice["ranking"][0] == "good"
    assert set(choice["scores"]) == set(scores)
    assert choice["scores"]["good"]["predicted_coverage"] > choice["scores"]["weak"]["predicted_coverage"]
    assert choice["criterion"] == "predicted_certified_coverage" and choice["n_validation"] == 600
    # ties go to the earlier candidate: two copies of one measure pick the first
    same = choose_confidence({"a": scores["good"], "b": scores["good"]}, agree, 0.1, 0.1, 500)
    assert same["choice"] == "a"


def _table(scores, agree, splits):
    n = len(agree)
    pred = np.full(n, "a", dtype=object)
    return pa.table({"id": [f"i{i}" for i in range(n)], "split": list(splits),
                     "pred": list(pred), "human_label": ["a" if g else "b" for g in agree],
                     **{f"conf_{k}": v for k, v in scores.items()}})


def test_auto_never_reads_calibration_items():
    scores, agree = _population(900, 2)
    splits = np.array(["train"] * 300 + ["valid"] * 200 + ["calibration"] * 300 + ["test"] * 100)
    clean = _table(scores, agree, splits)
    # poison: on calibration and test rows the *weak* measure is perfect and the others inverted,
    # and some values are NaN or out of range; none of it may change the choice or its scores
    poisoned_scores = {k: v.copy() for k, v in scores.items()}
    outside = splits != "train"
    outside &= splits != "valid"
    poisoned_scores["weak"][outside] = agree[outside].astype(float)
    poisoned_scores["good"][outside] = 1.0 - agree[outside]
    poisoned_scores["middle"][outside] = np.nan
    poisoned = _table(poisoned_scores, agree, splits)
    kwargs = dict(alpha=0.1, delta=0.1, n_calibration=300)
    a = choose_confidence_table(clean, **kwargs)
    b = choose_confidence_table(poisoned, **kwargs)
    assert a == b and a["n_validation"] == 500
    only_training = clean.filter(pa.array(~outside))
    assert choose_confidence_table(only_training, **kwargs) == a
    # restricting to the learned model's validation ids uses exactly those rows
    ids = [f"i{i}" for i in range(300, 500)]
    assert choose_confidence_table(poisoned, validation_ids=ids, **kwargs)["n_validation"] == 200


@pytest.mark.parametrize("design", ["population", "split"])
def test_validity_with_the_choice_inside_every_repetition_meets_one_minus_delta(design):
    # measures close in quality, so the choice really varies between repetitions
    rng = np.random.default_rng(3)
    n = 1500
    latent = rng.uniform(0, 1, n)
    agree = rng.random(n) < 0.7 + 0.29 * latent
    scores = {name: np.clip(latent + rng.normal(0, s, n), 0, 1)
              for name, s in (("a", 0.3), ("b", 0.25), ("c", 0.2))}
    alpha, delta = 0.15, 0.1
    result, chosen = validity_study_auto(scores, agree, alpha, delta, n_repetitions=2000,
                                         validation_size=150, calibration_size=300,
                                         design=design, random_state=0)
    assert len(np.unique(chosen)) >= 2            # the choice varied
    assert result.mean_coverage > 0.2             # and something was certified
    # binomial slack: the success rate may fall below 1 - δ only by sampling noise
    assert result.success_interval[1] >= 1 - delta
    assert result.success_rate >= 1 - delta - 3 * np.sqrt(delta * (1 - delta) / 2000)


def test_the_auto_study_reduces_to_the_plain_one_with_a_single_candidate():
    scores, agree = _population(800, 4)
    auto, _ = validity_study_auto({"good": scores["good"]}, agree, 0.1, 0.1, n_repetitions=500,
                                  validation_size=50, calibration_size=300, random_state=1)
    plain = validity_study_from_agreement(scores["good"], agree, 0.1, 0.1, n_repetitions=500,
                                          design="population", calibration_size=300,
                                          random_state=1)
    # different random streams, same distribution: mean coverage and success close
    assert abs(auto.mean_coverage - plain.mean_coverage) < 0.05
    assert abs(auto.success_rate - plain.success_rate) < 0.05


def test_when_nothing_is_predicted_certifiable_the_better_ranker_wins():
    scores, agree = _population(300, 5)
    choice = choose_confidence({"weak": scores["weak"], "good": scores["good"]}, agree,
                               alpha=0.01, delta=0.1, n_calibration=100)  # α too strict for all
    assert all(s["predicted_coverage"] == 0 for s in choice["scores"].values())
    assert choice["choice"] == "good"
    assert choice["scores"]["good"]["grid_auroc"] == pytest.approx(
        choice["scores"]["good"]["validation_auroc"], abs=0.01)


def test_a_learned_measure_must_predict_more_coverage_to_beat_a_heuristic():
    scores, agree = _population(300, 5)
    # α too strict for every candidate: all predict 0; the learned one ranks better but loses the tie
    tie = {"conf_simulated": scores["middle"], "conf_marc": scores["good"]}
    choice = choose_confidence(tie, agree, alpha=0.01, delta=0.1, n_calibration=100)
    assert all(s["predicted_coverage"] == 0 for s in choice["scores"].values())
    assert choice["scores"]["conf_marc"]["grid_auroc"] > choice["scores"]["conf_simulated"]["grid_auroc"]
    assert choice["choice"] == "conf_simulated"
    # with strictly more predicted coverage it wins
    scores, agree = _population(600, 1)
    win = choose_confidence({"conf_simulated": scores["weak"], "conf_marc": scores["good"]}, agree,
                            alpha=0.1, delta=0.1, n_calibration=500)
    assert win["scores"]["conf_marc"]["predicted_coverage"] > win["scores"]["conf_simulated"]["predicted_coverage"]
    assert win["choice"] == "conf_marc"
    # the vectorised study applies the same rule in every repetition
    scores, agree = _population(300, 5)
    _, chosen = validity_study_auto(tie, agree, alpha=0.01, delta=0.1, n_repetitions=50,
                                    validation_size=60, calibration_size=100, random_state=0)
    assert (chosen == 0).all()
