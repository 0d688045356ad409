"""Every reason string, exactly, from real routing outcomes."""

import numpy as np
import pyarrow as pa
import pytest

from marc_ray.calibrate.groups import route_by_group, thresholds_per_item
from marc_ray.calibrate.reasons import KINDS, count_unreadable, explain


def test_single_stage_reasons_by_group():
    thresholds = {"coding": [0.83], "chat": [0.7], "legal-small": [np.inf]}
    groups = np.array(["coding", "coding", "chat", "legal", "legal-small", "chat"], dtype=object)
    confidence = np.array([0.61, 0.91, 0.7, 0.99, 0.99, np.nan])
    pred = np.array(["a", "b", "a", "a", "a", None], dtype=object)
    routing = route_by_group(thresholds, groups, confidence, pred)
    item_thresholds, unseen = thresholds_per_item(thresholds, groups, 1)
    bad, total = count_unreadable(pa.array([[0.1] * 20, [0.2] * 20, [0.3] * 20, [0.4] * 20,
                                            [0.5] * 20, [np.nan] * 3 + [None] * 17], pa.list_(pa.float32())))
    kind, reason = explain(routing.stage, confidence, pred, item_thresholds, ["judge"], groups=groups,
                           unseen=unseen, runs_unreadable=bad, runs_total=total)
    assert reason.tolist() == [
        "confidence 0.61 is below this judge's certified threshold 0.83 (group: coding)",
        "confidence 0.91 is at or above this judge's certified threshold 0.83 (group: coding)",
        "confidence 0.70 is at or above this judge's certified threshold 0.70 (group: chat)",
        "group 'legal' was not in the calibration set",
        "the certificate abstained: no threshold was certified (group: legal-small)",
        "no usable verdict: 20 of 20 runs unreadable",
    ]
    assert kind.tolist() == ["below_threshold", "accepted", "accepted", "unseen_group", "abstained",
                             "no_verdict"]


def test_cascade_reasons_and_close_numbers():
    names = ["llama", "gpt-4"]
    thresholds = np.array([0.9, 0.8])
    confidence = np.array([[0.95, 0.1], [0.5, 0.85], [0.5, 0.61], [0.5, 0.7996], [0.2, 0.99]])
    pred = np.array([["a", "a"], ["a", "b"], ["a", "a"], ["b", "b"], ["a", None]], dtype=object)
    stage = np.array([0, 1, -1, -1, -1])
    kind, reason = explain(stage, confidence, pred, thresholds, names,
                           runs_unreadable=np.array([[0, 0], [0, 0], [0, 1], [0, 0], [0, 3]]),
                           runs_total=np.full((5, 2), 20))
    assert reason.tolist() == [
        "decided by stage 1 (llama): confidence 0.95 is at or above its certified threshold 0.90",
        "decided by stage 2 (gpt-4) after stage 1 escalated",
        "every stage escalated; last stage 2 (gpt-4): confidence 0.61 is below this judge's certified threshold 0.80",
        "every stage escalated; last stage 2 (gpt-4): confidence 0.7996 is below this judge's certified threshold 0.8000",
        "every stage escalated; last stage 2 (gpt-4): no usable verdict: 3 of 20 runs unreadable",
    ]
    assert kind.tolist()[:2] == ["accepted_first_stage", "accepted_later_stage"]
    # a third stage names the range of stages that escalated
    _, reason = explain([2], [[0.1, 0.1, 0.9]], [["a", "a", "b"]], [0.5, 0.5, 0.5], ["s", "m", "l"])
    assert reason.tolist() == ["decided by stage 3 (l) after stages 1-2 escalated"]


def test_every_kind_is_exercised_and_no_counts_variant():
    kind, reason = explain([-1], [0.9], [None], [0.5], ["judge"])
    assert reason.tolist() == ["no usable verdict from the judge"]
    kind2, reason2 = explain([-1], [0.9], ["a"], [np.inf], ["judge"])
    assert reason2.tolist() == ["the certificate abstained: no threshold was certified"]
    seen = {"accepted", "accepted_first_stage", "accepted_later_stage", "below_threshold",
            "no_verdict", "unseen_group", "abstained"}
    assert seen == set(KINDS)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="same items and stages"):
        explain([0, 1], [0.9], ["a"], [0.5], ["judge"])


def test_decide_with_single_and_grouped_certificates():
    from marc_ray.calibrate import SelectiveCalibrator
    from marc_ray.calibrate.decide import decide
    from marc_ray.calibrate.groups import GroupedCalibrator

    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1, 4000)
    groups = np.where(np.arange(4000) % 2, "coding", "chat").astype(object)
    agree = rng.random(4000) < np.where(groups == "coding", np.where(conf > 0.9, 1.0, 0.5), 0.5 + conf / 2)
    pred = np.full(4000, "a", dtype=object)
    human = np.where(agree, "a", "b")
    single = SelectiveCalibrator().calibrate(conf, pred, human).certificate(data_hash="h")
    decisions = decide(single, conf, pred)
    np.testing.assert_array_equal(decisions.accepted, conf >= single.stages[0]["threshold"])
    assert set(decisions.kind) == {"accepted", "below_threshold"} and "group" not in decisions.reason[0]
    grouped = GroupedCalibrator(by="task").calibrate(conf, pred, human, groups=groups).certificate(data_hash="h")
    new_groups = np.array(["coding", "chat", "legal"], dtype=object)
    decisions = decide(grouped, np.array([0.99, 0.51, 0.99]), np.array(["a", "b", "a"], dtype=object), new_groups)
    assert decisions.verdict.tolist() == ["a", "escalate", "escalate"]
    assert decisions.reason[0].endswith("(group: coding)") and decisions.kind[1] == "below_threshold"
    assert decisions.reason[2] == "group 'legal' was not in the calibration set" and decisions.unseen[2]
    with pytest.raises(ValueError, match="threshold per 'task'"):
        decide(grouped, [0.9], ["a"])


def test_a_run_the_data_never_had_is_not_unreadable():
    # PandaLM records one order: the other order's runs are "missing: not run", not unreadable
    from marc_ray.calibrate.evaluation import run_vector_summary

    probs = pa.array([[1.0, None, 0.0, None], [None, None, None, None], [float("nan"), None, 1.0, None]],
                     pa.list_(pa.float64()))
    status = pa.array([["ok", "missing: not run", "ok", "missing: not run"],
                       ["missing: unusable verdict", "missing: not run", "missing: no probability",
                        "missing: not run"],
                       ["missing: unusable verdict", "missing: not run", "ok", "missing: not run"]],
                      pa.list_(pa.string()))
    bad, total = count_unreadable(probs, status)
    assert bad.tolist() == [0, 2, 1] and total.tolist() == [2, 2, 2]
    kind, reason = explain([-1], [0.9], [None], [0.5], ["judge"], runs_unreadable=bad[1:2],
                           runs_total=total[1:2])
    assert reason.tolist() == ["no usable verdict: 2 of 2 runs unreadable"]
    summary = run_vector_summary(probs[2].as_py(), status[2].as_py())
    assert summary == {"runs": 2, "favour_a": 1, "favour_b": 0, "even": 0, "unreadable": 1,
                       "not_run": 2, "mean_p_a": 1.0}
    # without a status a missing run cannot be told apart: it is not called unreadable outright
    assert run_vector_summary(probs[2].as_py())["not_run"] is None


def test_an_abstaining_cascade_stage_says_it_certified_nothing():
    # stage 2 certified nothing (+inf): its reason used to read "threshold 0.00"
    kind, reason = explain([-1, -1], [[0.5, 1.0], [0.95, 0.3]], [["a", "a"], ["a", "b"]],
                           [0.97, np.inf], ["llama", "gpt-4"])
    assert reason.tolist() == [
        "every stage escalated; last stage 2 (gpt-4) certified nothing (no threshold passed), so it "
        "decides no item"] * 2
    assert kind.tolist() == ["abstained", "abstained"]
    assert not any("0.00" in r for r in reason)
    # with groups, the group is named; with every stage abstaining, the certificate abstained
    _, reason = explain([-1], [[0.5, 1.0]], [["a", "a"]], [0.9, np.inf], ["s", "l"], groups=["chat"],
                        unseen=[False])
    assert reason.tolist() == ["every stage escalated; last stage 2 (l) certified nothing (no "
                               "threshold passed), so it decides no item (group: chat)"]
    _, reason = explain([-1], [[0.5, 1.0]], [["a", "a"]], [np.inf, np.inf], ["s", "l"])
    assert reason.tolist() == ["the certificate abstained: no threshold was certified"]
