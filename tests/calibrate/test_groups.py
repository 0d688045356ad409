"""Per-group certificates: equal to per-group calibrators at delta_g, abstention, unseen groups."""

import math

import numpy as np
import pytest

from marc_ray.calibrate import CascadeCalibrator, SelectiveCalibrator
from marc_ray.calibrate.bounds import n_needed_at_rate, min_n_to_pass
from marc_ray.calibrate.groups import (GroupedCalibrator, group_deltas, labels_needed,
                                       route_by_group, thresholds_from_record)
from marc_ray.contracts import Certificate


def _items(sizes, hardness, seed=0):
    """Groups of given sizes; in a harder group agreement grows more slowly with confidence."""
    rng = np.random.default_rng(seed)
    confidence, agree, groups = [], [], []
    for name, n in sizes.items():
        c = rng.uniform(0.5, 1, n)
        confidence.append(c)
        agree.append(rng.random(n) < 1 - hardness[name] * (1 - c) * 2)
        groups.append(np.full(n, name, dtype=object))
    confidence, agree, groups = map(np.concatenate, (confidence, agree, groups))
    pred = np.full(agree.size, "a", dtype=object)
    return confidence, pred, np.where(agree, "a", "b").astype(object), groups


def test_each_group_equals_a_selective_calibrator_at_delta_over_g():
    confidence, pred, human, groups = _items({"coding": 1500, "chat": 2500}, {"coding": 0.6, "chat": 0.2})
    grouped = GroupedCalibrator(alpha=0.1, delta=0.1).calibrate(confidence, pred, human, groups=groups)
    assert grouped.groups_ == ("chat", "coding") and grouped.deltas_ == {"chat": 0.05, "coding": 0.05}
    for g in grouped.groups_:
        rows = groups == g
        single = SelectiveCalibrator(alpha=0.1, delta=0.05).calibrate(confidence[rows], pred[rows], human[rows])
        assert grouped.thresholds_[g][0] == single.threshold_
        assert grouped.group_coverage_[g] == pytest.approx(single.coverage_)
    assert grouped.thresholds_["coding"][0] > grouped.thresholds_["chat"][0]  # harder: stricter


def test_weights_split_delta_and_are_validated():
    assert group_deltas(["x", "y"], 0.1, {"x": 3, "y": 1}) == pytest.approx({"x": 0.075, "y": 0.025})
    with pytest.raises(ValueError, match="positive weight for every group"):
        group_deltas(["x", "y"], 0.1, {"x": 1})
    with pytest.raises(ValueError, match="'equal' or a mapping"):
        group_deltas(["x"], 0.1, "bonferroni")


def test_small_group_abstains_and_says_how_many_labels_it_needs():
    confidence, pred, human, groups = _items({"big": 3000, "legal": 15}, {"big": 0.2, "legal": 0.2})
    grouped = GroupedCalibrator(alpha=0.1, delta=0.1).calibrate(confidence, pred, human, groups=groups)
    assert grouped.abstains_["legal"] and not grouped.abstains_["big"]
    assert math.isinf(grouped.thresholds_["legal"][0])
    need = grouped.labels_needed_["legal"]
    assert need["n_labelled"] > 15 and need["n_accepted"] >= min_n_to_pass(0.1, 0.05)
    assert need["n_accepted"] == n_needed_at_rate(need["observed_disagreement"], 0.1, 0.05)
    assert not grouped.accept(np.ones(3), groups=["legal"] * 3).any()


def test_labels_needed_rule():
    assert n_needed_at_rate(0.0, 0.1, 0.1) == min_n_to_pass(0.1, 0.1)
    assert math.isinf(n_needed_at_rate(0.12, 0.1, 0.1))
    n = n_needed_at_rate(0.05, 0.1, 0.05)
    from marc_ray.calibrate.bounds import clopper_pearson_upper
    assert clopper_pearson_upper(round(0.05 * n), int(n), 0.05) <= 0.1
    assert clopper_pearson_upper(round(0.05 * (n - 1)), int(n) - 1, 0.05) > 0.1
    out = labels_needed([0.9, 0.8, 0.7, 0.6], [True, True, False, False], 0.1, 0.1)
    assert out["observed_disagreement"] == 0.0 and out["n_labelled"] == 2 * out["n_accepted"]


def test_route_by_group_escalates_unseen_groups_and_missing_verdicts():
    thresholds = {"coding": [0.8], "chat": [0.6]}
    routing = route_by_group(thresholds, ["coding", "coding", "chat", "legal", None, "chat"],
                             [0.9, 0.7, 0.7, 0.99, 0.99, np.nan], ["a", "b", "b", "a", "a", "a"])
    assert routing.verdict.tolist() == ["a", "escalate", "b", "escalate", "escalate", "escalate"]
    assert routing.unseen.tolist() == [False, False, False, True, True, False]
    # two stages: stage 2 takes what stage 1 leaves, per group
    routing = route_by_group({"g": [0.9, 0.5]}, ["g", "g", "g"], np.array([[0.95, 0.1], [0.6, 0.6], [0.6, 0.4]]),
                             np.array([["a", "b"], ["a", "b"], [None, "a"]], dtype=object))
    assert routing.stage.tolist() == [0, 1, -1] and routing.verdict.tolist() == ["a", "b", "escalate"]
    with pytest.raises(ValueError, match="2 thresholds for 1 stages"):
        route_by_group({"g": [0.1, 0.2]}, ["g"], [0.5], ["a"])


def test_cascade_per_group_equals_cascade_calibrator_at_delta_g():
    confidence, pred, human, groups = _items({"x": 2000, "y": 2000}, {"x": 0.5, "y": 0.2}, seed=3)
    rng = np.random.default_rng(4)
    cheap = np.clip(confidence + rng.normal(0, 0.2, confidence.size), 0, 1)
    both = np.stack([cheap, confidence], axis=1)
    preds = np.stack([pred, pred], axis=1)
    grouped = GroupedCalibrator(alpha=0.1, delta=0.1, by="task").calibrate(
        both, preds, human, groups=groups, names=["small", "big"])
    for g in ("x", "y"):
        rows = groups == g
        cascade = CascadeCalibrator(alpha=0.1, delta=0.05).calibrate(both[rows], preds[rows], human[rows])
        np.testing.assert_array_equal(grouped.thresholds_[g], cascade.thresholds_)
    certificate = grouped.certificate(data_hash="h", confidence_names=["c1", "c2"])
    assert certificate.groups["column"] == "task" and certificate.stages[0]["name"] == "small"
    assert "delta_g / 2 per stage" in certificate.delta_split
    assert [s["delta"] for s in certificate.groups["values"]["x"]["stages"]] == [0.025, 0.025]


def test_certificate_round_trip_and_fail_safe_top_level(tmp_path):
    confidence, pred, human, groups = _items({"coding": 1500, "chat": 2500, "legal": 10},
                                             {"coding": 0.6, "chat": 0.2, "legal": 0.2})
    grouped = GroupedCalibrator(alpha=0.1, delta=0.1, by="task").calibrate(confidence, pred, human,
                                                                           groups=groups)
    certificate = grouped.certificate(data_hash="h", confidence_names=["conf"])
    certificate.write(tmp_path / "c.json")
    back = Certificate.read(tmp_path / "c.json")
    assert back.groups["column"] == "task" and "delta / 3 per group" in back.groups["delta_split"]
    assert all(math.isinf(float(s["threshold"])) for s in back.stages)  # unaware routers escalate
    thresholds = thresholds_from_record(back.groups)
    for g in grouped.groups_:
        np.testing.assert_array_equal(thresholds[g], grouped.thresholds_[g])
    assert back.groups["values"]["legal"]["labels_needed"]["n_labelled"] > 10
    # a single-threshold certificate keeps its old shape (no groups key)
    single = SelectiveCalibrator().calibrate(confidence, pred, human).certificate(data_hash="h")
    assert "groups" not in single.to_dict()


def test_missing_group_is_refused():
    with pytest.raises(ValueError, match="group is missing at position 1"):
        GroupedCalibrator().calibrate([0.9, 0.9], ["a", "a"], ["a", "a"], groups=["x", None])
