"""The post-deployment audit: its false-alarm rate, its power, the anytime-valid variant, the CLI."""

import json

import numpy as np
import pytest
from scipy import stats

from marc_ray import cli
from marc_ray.calibrate import SelectiveCalibrator
from marc_ray.calibrate.audit import (EXIT_CODES, audit, audit_p_value, betting_e_values,
                                      exact_power, sequential_rejections)
from marc_ray.cli import main

ALPHA, LEVEL, REPS = 0.1, 0.05, 4000
SLACK = 3 * np.sqrt(LEVEL * (1 - LEVEL) / REPS)  # binomial slack on a rate estimated from REPS


@pytest.fixture(autouse=True)
def only_calibration_commands(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("marc_ray.calibrate.cli",))


def test_p_value_and_bound_are_scipy_exact():
    assert audit_p_value(30, 200, ALPHA) == pytest.approx(stats.binomtest(30, 200, ALPHA, "greater").pvalue)
    assert audit_p_value(0, 0, ALPHA) == 1.0
    result = audit(np.r_[np.zeros(30, bool), np.ones(170, bool)], ALPHA, LEVEL)
    assert (result.n, result.agreements, result.disagreements) == (200, 170, 30)
    assert result.upper_bound == pytest.approx(stats.beta.ppf(1 - LEVEL, 31, 170))
    assert result.observed_agreement == pytest.approx(0.85)


@pytest.mark.parametrize("n", [50, 200, 1000])
def test_exact_false_alarm_rate_at_most_level_when_agreement_is_exactly_promised(n):
    rng = np.random.default_rng(n)
    k = rng.binomial(n, ALPHA, REPS)  # agreement exactly 1 - alpha: the hardest case of H0
    false_alarms = (audit_p_value(k, n, ALPHA) <= LEVEL).mean()
    assert false_alarms <= LEVEL + SLACK


def test_exact_power_when_agreement_has_dropped():
    rng = np.random.default_rng(1)
    k = rng.binomial(200, 0.2, REPS)  # agreement fell from 90% to 80%
    power = (audit_p_value(k, 200, ALPHA) <= LEVEL).mean()
    assert power == pytest.approx(exact_power(200, ALPHA, LEVEL, 0.2), abs=0.02)
    assert power > 0.95  # 0.989 computed exactly
    assert exact_power(50, ALPHA, LEVEL, 0.15) < 0.5  # small audits miss small drops: reported


def test_anytime_valid_over_20_looks_while_the_naive_repeated_test_is_not():
    rng = np.random.default_rng(2)
    looks, per_look = 20, 50
    batch_k = rng.binomial(per_look, ALPHA, (REPS, looks))
    batch_n = np.full((REPS, looks), per_look)
    _, rejected = sequential_rejections(batch_k, batch_n, ALPHA, LEVEL)
    sequential_false_alarms = rejected[:, -1].mean()  # rejected at any of the 20 looks
    naive = audit_p_value(np.cumsum(batch_k, 1), np.cumsum(batch_n, 1), ALPHA) <= LEVEL
    naive_false_alarms = naive.any(axis=1).mean()
    assert sequential_false_alarms <= LEVEL + SLACK
    assert naive_false_alarms > 2 * LEVEL  # about 0.18: checking weekly inflates the exact test
    # and it still detects a drop: agreement 80%, rejected by the 20th look almost always
    _, rejected = sequential_rejections(rng.binomial(per_look, 0.2, (REPS, looks)), batch_n, ALPHA, LEVEL)
    assert rejected[:, 3].mean() > 0.8 and rejected[:, -1].mean() > 0.99


def test_e_value_depends_on_counts_only_and_rejection_is_final():
    assert betting_e_values(0, 0, ALPHA) == pytest.approx(1.0)
    e_value, rejected = sequential_rejections([40, 0, 0], [100, 100, 100], ALPHA, LEVEL)
    assert rejected.tolist() == [True, True, True] and e_value[0] > 1 / LEVEL > e_value[-1]
    with pytest.raises(ValueError, match="bets"):
        betting_e_values(1, 2, ALPHA, bets=[1.5])


def test_audit_with_batches_sorts_looks_and_reports_each():
    agree = np.r_[np.ones(90, bool), np.zeros(10, bool), np.ones(60, bool), np.zeros(40, bool)]
    batch = np.r_[np.full(100, "2026-W02"), np.full(100, "2026-W01")]
    result = audit(agree, ALPHA, LEVEL, batch=batch)
    assert result.test == "sequential" and [b["batch"] for b in result.batches] == ["2026-W01", "2026-W02"]
    assert result.batches[0]["rejected_by_now"] and result.rejected and result.exit_code == 3
    assert "no longer holds" in result.sentence() and "Recalibrate" in result.advice()


# -- the command -------------------------------------------------------------------------------

def _certificate(tmp_path, alpha=ALPHA):
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1, 3000)
    agree = rng.random(3000) < confidence
    pred = np.full(3000, "a", dtype=object)
    human = np.where(agree, "a", "b")
    calibrator = SelectiveCalibrator(alpha=alpha, delta=0.1).calibrate(confidence, pred, human)
    certificate = calibrator.certificate(data_hash="h", extra={
        "calibration_confidence": {"judge": confidence.round(6).tolist()}})
    path = tmp_path / "certificate.json"
    certificate.write(path)
    return path


def _audited(tmp_path, disagreement, n=400, seed=0, shift=0.0, name="audited.jsonl"):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = None if i % 4 == 3 else ("b" if rng.random() < disagreement else "a")
        rows.append({"id": f"x{i}", "verdict": "escalate" if i % 10 == 0 else "a",
                     "human_label": label, "confidence": float(rng.uniform(0.5, 1) - shift),
                     "week": int(i // 100)})
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_cli_keep_then_recalibrate(tmp_path, capsys):
    certificate = _certificate(tmp_path)
    code = main(["audit", str(certificate), str(_audited(tmp_path, 0.05)), "--out", str(tmp_path / "a")])
    assert code == 0
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert report["counts"]["escalated"] == 40 and report["n_audited"] == report["counts"]["audited"]
    assert report["rejected"] is False and report["drift"]["fired"] is False
    assert "not rejected" in capsys.readouterr().out
    code = main(["audit", str(certificate), str(_audited(tmp_path, 0.3, name="bad.jsonl")),
                 "--sequential", "--batch-column", "week", "--out", str(tmp_path / "b")])
    report = json.loads((tmp_path / "b" / "audit.json").read_text())
    assert code == 3 and report["rejected"] and len(report["batches"]) == 4
    assert report["exit_meaning"] == EXIT_CODES[3]


def test_cli_drift_alone_gives_exit_4(tmp_path):
    code = main(["audit", str(_certificate(tmp_path)), str(_audited(tmp_path, 0.05, shift=0.3))])
    assert code == 4


@pytest.mark.parametrize("row, field, message", [
    ({"id": "x", "verdict": "A", "human_label": "a"}, "verdict", "unknown verdict"),
    ({"id": "x", "verdict": "a", "human_label": "yes"}, "human_label", "unknown label"),
    ({"id": "x", "verdict": "a", "week": None}, "week", "missing batch"),
])
def test_cli_bad_input_exits_2_naming_row_and_field(tmp_path, capsys, row, field, message):
    path = tmp_path / "audited.jsonl"
    row = {"human_label": "a", **row}
    path.write_text(json.dumps({"id": "ok", "verdict": "b", "human_label": "b", "week": 1}) + "\n"
                    + json.dumps(row) + "\n")
    assert main(["audit", str(_certificate(tmp_path)), str(path), "--out", str(tmp_path / "o"),
                 "--sequential", "--batch-column", "week"]) == 2
    error = capsys.readouterr().err
    assert f"row 1, field '{field}'" in error and message in error
    assert not (tmp_path / "o").exists()


def test_cli_missing_label_column_exits_2(tmp_path, capsys):
    path = tmp_path / "audited.jsonl"
    path.write_text(json.dumps({"id": "x", "verdict": "a"}) + "\n")
    assert main(["audit", str(_certificate(tmp_path)), str(path)]) == 2
    assert "field 'human_label': missing column" in capsys.readouterr().err


def test_per_group_audit_finds_the_group_that_dropped(tmp_path, capsys):
    from marc_ray.calibrate.audit import audit_by_group
    from marc_ray.calibrate.groups import GroupedCalibrator

    rng = np.random.default_rng(3)
    # pooled agreement stays at 90%, but one group fell to 75%: only a per-group audit sees it
    groups = np.r_[np.full(800, "chat"), np.full(200, "coding")]
    agree = rng.random(1000) < np.where(groups == "chat", 0.94, 0.75)
    result = audit_by_group(agree, groups, ALPHA, LEVEL)
    assert result.groups["coding"].rejected and not result.groups["chat"].rejected and result.rejected
    assert result.groups["coding"].level == LEVEL / 2 and result.exit_code == 3
    assert "no longer holds for 'coding'" in result.sentence()
    # false alarms over both groups together stay <= level when every group is exactly at 1 - alpha
    k_chat = rng.binomial(800, ALPHA, REPS)
    k_coding = rng.binomial(200, ALPHA, REPS)
    alarms = (audit_p_value(k_chat, 800, ALPHA) <= LEVEL / 2) | (audit_p_value(k_coding, 200, ALPHA) <= LEVEL / 2)
    assert alarms.mean() <= LEVEL + SLACK
    # end to end from a per-group certificate
    conf = rng.uniform(0.5, 1, 4000)
    cal_groups = np.where(np.arange(4000) % 2, "coding", "chat")
    human = np.where(rng.random(4000) < np.where(conf > 0.8, 1.0, 0.6), "a", "b")
    certificate = GroupedCalibrator().calibrate(conf, np.full(4000, "a", dtype=object), human,
                                                cal_groups).certificate(data_hash="h", column="task")
    certificate.write(tmp_path / "certificate.json")
    rows = [{"id": str(i), "verdict": "a", "task": g, "human_label": "a" if a else "b"}
            for i, (g, a) in enumerate(zip(groups, agree))]
    (tmp_path / "audited.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert main(["audit", str(tmp_path / "certificate.json"), str(tmp_path / "audited.jsonl"),
                 "--out", str(tmp_path / "o")]) == 3
    report = json.loads((tmp_path / "o" / "audit.json").read_text())
    assert report["test"] == "per-group exact" and report["groups"]["coding"]["rejected"]
