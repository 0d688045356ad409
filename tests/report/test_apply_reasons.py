"""apply with a per-group certificate, and a plain-words reason for every decision.

A generated calibration set has an easy group, a hard group and a tiny one: the per-group
certificate certifies a threshold for the easy group, a stricter one (or none) for the hard
group and nothing for the tiny one; apply routes each new item by its group, escalates an
unseen group with that reason, and writes every reason kind into decisions.parquet.
"""

from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marc_ray.apply import apply_certificate, apply_file
from marc_ray.calibrate.grid import fixed_grid
from marc_ray.calibrate.groups import GroupedCalibrator
from marc_ray.calibrate.reasons import KINDS
from marc_ray.contracts import ContractError, ItemSet
from marc_ray.report.render import render_markdown
from marc_ray.report.summary import ReportInputs, summarize

ALPHA, DELTA = 0.1, 0.1


def grouped_items(seed: int = 0):
    """Easy: agreement rises to ~99% with confidence; hard: ~75% at any confidence; tiny: 6 items."""
    rng = np.random.default_rng(seed)
    sizes = {"easy": 2500, "hard": 400, "tiny": 6}
    groups = np.concatenate([np.full(n, g, dtype=object) for g, n in sizes.items()])
    n = groups.size
    confidence = rng.uniform(0.5, 1.0, n)
    p_agree = np.where(groups == "easy", 0.6 + 0.39 * (confidence - 0.5) / 0.5, 0.75)
    human = np.where(rng.random(n) < 0.5, "a", "b").astype(object)
    agree = rng.random(n) < p_agree
    pred = np.where(agree, human, np.where(human == "a", "b", "a")).astype(object)
    return confidence, pred, human, groups


@pytest.fixture(scope="module")
def grouped():
    confidence, pred, human, groups = grouped_items()
    calibrator = GroupedCalibrator(alpha=ALPHA, delta=DELTA, grid=fixed_grid(50, 0.5, 1.0))
    calibrator.calibrate(confidence, pred, human, groups=groups, names=["toy-judge"])
    certificate = calibrator.certificate("sha256:toy", confidence_names=["conf_simulated"])
    return certificate, calibrator, (confidence, pred, human, groups)


def certified_by(calibrator: GroupedCalibrator, column: str):
    """The same calibration certified as grouped by another column name (``by``)."""
    renamed = copy.copy(calibrator)
    renamed.by = column
    return renamed.certificate("sha256:toy", confidence_names=["conf_simulated"])


def test_per_group_thresholds_and_the_single_threshold_over_accepting_the_hard_group(grouped):
    from marc_ray.calibrate.evaluation import evaluate_groups

    certificate, calibrator, (confidence, pred, human, groups) = grouped
    values = certificate.groups["values"]
    easy, hard = (float(values[g]["stages"][0]["threshold"]) for g in ("easy", "hard"))
    assert np.isfinite(easy) and easy < 1.0
    assert not np.isfinite(hard)  # 75% agreement everywhere: nothing certifies 90%
    assert values["tiny"]["abstains"] and values["tiny"]["labels_needed"]["n_labelled"] > 6
    assert certificate.stages[0]["threshold"] == float("inf") and certificate.stages[0]["grouped"]
    items = ItemSet("calibration", confidence, pred, human, [f"c{i}" for i in range(len(human))], groups)
    figures = evaluate_groups(certificate, items)
    hard_row = figures["groups"]["hard"]["sets"]["calibration"]
    assert hard_row["grouped"]["coverage"] == 0.0
    # one threshold for all accepts hard items and falls below 1 - alpha on them
    assert hard_row["single"]["coverage"] > 0 and hard_row["single"]["agreement"] < 1 - ALPHA
    assert figures["groups"]["hard"]["over_accepted"] == ["calibration"]
    easy_row = figures["groups"]["easy"]["sets"]["calibration"]
    assert easy_row["grouped"]["agreement"] >= 1 - ALPHA


def new_items(easy_threshold: float) -> pa.Table:
    """One item per reason of a one-judge per-group certificate."""
    nan = float("nan")
    rows = [  # id, group, pred, confidence, probs
        ("accepted", "easy", "a", min(1.0, easy_threshold + 0.01), [0.9] * 20),
        ("below", "easy", "a", easy_threshold - 0.2, [0.6] * 20),
        ("no-verdict", "easy", None, nan, [0.7] * 17 + [nan] * 3),
        ("hard", "hard", "b", 0.99, [0.1] * 20),
        ("tiny", "tiny", "a", 0.99, [0.9] * 20),
        ("unseen", "legal", "a", 0.99, [0.9] * 20),
    ]
    return pa.table({"id": [r[0] for r in rows], "group": [r[1] for r in rows],
                     "pred": [r[2] for r in rows], "conf_simulated": [r[3] for r in rows],
                     "probs": pa.array([r[4] for r in rows], pa.list_(pa.float32()))})


def test_apply_routes_by_group_and_writes_every_reason(grouped, tmp_path):
    certificate, _, _ = grouped
    easy = float(certificate.groups["values"]["easy"]["stages"][0]["threshold"])
    certificate_path = tmp_path / "certificate.json"
    certificate.write(certificate_path)
    data = tmp_path / "new.parquet"
    pq.write_table(new_items(easy), data)
    summary = apply_file(certificate_path, data, tmp_path / "out")
    decisions = pq.read_table(tmp_path / "out" / "decisions.parquet").to_pylist()
    by_id = {row["id"]: row for row in decisions}
    assert by_id["accepted"]["verdict"] == "a" and by_id["accepted"]["reason_kind"] == "accepted"
    assert by_id["accepted"]["group"] == "easy"
    assert by_id["accepted"]["reason"] == (
        f"confidence {min(1.0, easy + 0.01):.2f} is at or above this judge's certified threshold "
        f"{easy:.2f} (group: easy)")
    assert by_id["below"]["reason"] == (f"confidence {easy - 0.2:.2f} is below this judge's "
                                        f"certified threshold {easy:.2f} (group: easy)")
    assert by_id["no-verdict"]["reason"] == "no usable verdict: 3 of 20 runs unreadable"
    for name in ("hard", "tiny"):  # both certified nothing: escalated whatever the confidence
        assert by_id[name]["verdict"] == "escalate" and by_id[name]["reason_kind"] == "abstained"
        assert by_id[name]["reason"] == ("the certificate abstained: no threshold was certified "
                                         f"(group: {name})")
    assert by_id["unseen"]["verdict"] == "escalate"
    assert by_id["unseen"]["reason"] == "group 'legal' was not in the calibration set"
    assert by_id["unseen"]["reason_kind"] == "unseen_group"
    assert summary["by_reason"] == {"accepted": 1, "below_threshold": 1, "no_verdict": 1,
                                    "unseen_group": 1, "abstained": 2}
    assert summary["by_group"]["legal"] == {"n": 1, "decided": 0, "escalated": 1, "unseen": True}
    assert summary["by_group"]["easy"]["decided"] == 1


def test_a_per_group_certificate_needs_the_group_column(grouped):
    certificate, _, _ = grouped
    table = new_items(0.8).drop_columns(["group"])
    with pytest.raises(ContractError, match="group"):
        apply_certificate(certificate, table)


def test_apply_routes_by_the_certificates_column_not_by_group(grouped):
    # the same certificate, certified per "language": the data's group column is ignored
    _, calibrator, _ = grouped
    by_language = certified_by(calibrator, "language")
    assert by_language.groups["column"] == "language"
    easy = float(by_language.groups["values"]["easy"]["stages"][0]["threshold"])
    table = new_items(easy)
    table = table.append_column("language", table.column("group"))
    table = table.set_column(table.column_names.index("group"), "group",
                             pa.array(["legal"] * table.num_rows))
    table = table.set_column(table.column_names.index("language"), "language",
                             pa.array(["easy", "easy", "easy", "hard", "tiny", None]))
    decisions, summary = apply_certificate(by_language, table)
    by_id = {row["id"]: row for row in decisions.to_pylist()}
    assert "language" in decisions.column_names and "group" not in decisions.column_names
    assert by_id["accepted"]["verdict"] == "a" and by_id["accepted"]["language"] == "easy"
    assert by_id["unseen"]["verdict"] == "escalate"
    assert by_id["unseen"]["reason_kind"] == "unseen_group"
    assert by_id["unseen"]["reason"] == ("the item has no group value, and every certified "
                                         "threshold is for a group")
    with pytest.raises(ContractError, match=r"field 'language'.*carry: \[language\]"):
        apply_certificate(by_language, table.drop_columns(["language"]))
    by_reason = certified_by(calibrator, "reason")
    with pytest.raises(ContractError, match=r"field 'reason'.*also a column of the decisions"):
        apply_certificate(by_reason, table.append_column("reason", table.column("language")))


def test_cascade_reasons_reach_the_decisions(cascade):
    certificate, stages, _ = cascade
    small, large = (float(s["threshold"]) for s in certificate.stages)
    assert np.isfinite(small) and np.isfinite(large)
    ids = ["first", "later", "neither"]
    confidence = {"small": [1.0, 0.5, 0.5], "large": [0.5, 1.0, 0.5]}
    table = pa.concat_tables([pa.table({"id": ids, "judge": [name] * 3, "pred": ["a", "b", "a"],
                                        "conf_marc": confidence[name]})
                              for name in ("small", "large")])
    decisions, summary = apply_certificate(certificate, table)
    reasons = dict(zip(decisions.column("id").to_pylist(), decisions.column("reason").to_pylist()))
    kinds = dict(zip(decisions.column("id").to_pylist(), decisions.column("reason_kind").to_pylist()))
    assert kinds == {"first": "accepted_first_stage", "later": "accepted_later_stage",
                     "neither": "below_threshold"}
    assert reasons["first"] == (f"decided by stage 1 (small): confidence 1.00 is at or above its "
                                f"certified threshold {small:.2f}")
    assert reasons["later"] == "decided by stage 2 (large) after stage 1 escalated"
    assert reasons["neither"] == (f"every stage escalated; last stage 2 (large): confidence 0.50 is "
                                  f"below this judge's certified threshold {large:.2f}")
    assert summary["by_reason"] == {"accepted_first_stage": 1, "accepted_later_stage": 1,
                                    "below_threshold": 1}


def test_every_reason_kind_is_exercised_by_these_tests():
    covered = {"accepted", "below_threshold", "no_verdict", "abstained", "unseen_group",
               "accepted_first_stage", "accepted_later_stage"}
    assert covered == set(KINDS)


def test_the_report_renders_the_per_group_section_and_escalations(grouped):
    certificate, _, (confidence, pred, human, groups) = grouped
    items = ItemSet("calibration", confidence, pred, human, [f"c{i}" for i in range(len(human))], groups)
    summary = summarize(ReportInputs(certificate, items))
    assert summary["groups"]["groups"]["hard"]["over_accepted"] == ["calibration"]
    assert set(summary["escalations"]["examples"]) >= {"below_threshold", "abstained"}
    assert "per group" in summary["guarantee"]["headline"].lower() or "one threshold per group" in \
        summary["guarantee"]["headline"]
    text = render_markdown(summary, [])
    assert "## Per-group certificates" in text
    assert "One threshold for all over-accepts group 'hard'" in text
    assert "Group 'tiny' certified nothing" in text
    assert "### Escalated items by reason" in text


def test_a_mapped_learned_threshold_reads_as_estimated_agreement_and_gamma_is_shown(single):
    certificate, (confidence, pred, human) = single
    threshold = float(certificate.stages[0]["threshold"])
    fit = {"toy-judge": {"gamma_history": [0.5, 0.3, 0.25], "gamma": 0.3, "best_epoch": 1,
                         "agreement_map": True}}
    summary = summarize(ReportInputs(certificate, ItemSet("calibration", confidence, pred, human),
                                     fit=fit))
    assert summary["readings"] == {"toy-judge": f"estimated agreement >= {threshold:.2f}"}
    text = render_markdown(summary, [])
    assert f"(estimated agreement >= {threshold:.2f})" in text
    assert "### Margin gamma per epoch" in text and "| toy-judge | 3 | 0.5, 0.3, 0.25 | 2 | 0.3 |" in text
    # without the agreement map the learned score is not a probability: no such reading
    raw = summarize(ReportInputs(certificate, ItemSet("calibration", confidence, pred, human),
                                 fit={"toy-judge": {**fit["toy-judge"], "agreement_map": False}}))
    assert raw["readings"] == {}
