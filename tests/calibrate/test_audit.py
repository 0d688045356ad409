"""The post-deployment audit: its false-alarm rate, its power, the anytime-valid variant, the CLI."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from marc_ray import cli
from marc_ray.calibrate import SelectiveCalibrator
from marc_ray.calibrate.audit import (EXIT_CANNOT_TEST, EXIT_CODES, audit, audit_p_value,
                                      betting_e_values, exact_power, sequential_rejections)
from marc_ray.calibrate.groups import GroupedCalibrator
from marc_ray.cli import main
from marc_ray.contracts import Certificate
from marc_ray.contracts.errors import EXIT_CODES as ERROR_EXIT_CODES

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


def _threshold(path) -> float:
    return Certificate.read(path).thresholds[0]


def _audited(tmp_path, disagreement, n=400, seed=0, low=0.5, name="audited.jsonl"):
    """Scored items (confidence, the judge's pred), every fourth one left unlabelled."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = None if i % 4 == 3 else ("b" if rng.random() < disagreement else "a")
        rows.append({"id": f"x{i}", "pred": "a", "human_label": label,
                     "confidence": float(rng.uniform(low, 1)), "week": int(i // 100)})
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_keep_then_recalibrate(tmp_path, capsys):
    certificate = _certificate(tmp_path)
    audited = _audited(tmp_path, 0.02)
    code = main(["audit", str(certificate), str(audited), "--out", str(tmp_path / "a")])
    assert code == 0
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    decided = [r for r in _rows(audited) if r["confidence"] >= _threshold(certificate)]
    assert 0 < len(decided) < 400 and report["counts"]["decided"] == len(decided)
    assert report["counts"]["escalated"] == 400 - len(decided)
    assert report["n_audited"] == sum(r["human_label"] is not None for r in decided)
    assert report["rejected"] is False and report["drift"]["fired"] is False
    assert "not rejected" in capsys.readouterr().out
    code = main(["audit", str(certificate), str(_audited(tmp_path, 0.4, n=1000, name="bad.jsonl")),
                 "--sequential", "--batch-column", "week", "--out", str(tmp_path / "b")])
    report = json.loads((tmp_path / "b" / "audit.json").read_text())
    assert code == 3 and report["rejected"] and len(report["batches"]) == 10
    assert report["exit_meaning"] == EXIT_CODES[3]


def test_cli_drift_alone_gives_exit_4(tmp_path):
    # every item now sits near the top of the confidence scale: all decided, none disagreeing
    code = main(["audit", str(_certificate(tmp_path)), str(_audited(tmp_path, 0.0, low=0.97))])
    assert code == 4


def test_exit_codes_are_distinct_and_cannot_test_is_not_keep():
    assert len(set(EXIT_CODES)) == len(EXIT_CODES) == 5 and EXIT_CANNOT_TEST == 6
    assert set(EXIT_CODES).isdisjoint(set(ERROR_EXIT_CODES) - {0, 2})  # 5 and 130 stay the CLI's
    assert audit([], ALPHA, LEVEL).exit_code == EXIT_CANNOT_TEST


def test_cli_cannot_test_when_only_escalated_items_are_labelled(tmp_path, capsys):
    certificate = _certificate(tmp_path)
    threshold = _threshold(certificate)
    rows = [dict(r, human_label=None if r["confidence"] >= threshold else r["human_label"])
            for r in _rows(_audited(tmp_path, 0.02))]
    (tmp_path / "audited.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    code = main(["audit", str(certificate), str(tmp_path / "audited.jsonl"), "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert code == EXIT_CANNOT_TEST  # it was 0, "keep", with nothing tested
    assert "cannot test" in out and "Label a random sample of the items this certificate decides" in out
    report = json.loads((tmp_path / "o" / "audit.json").read_text())
    assert report["n_audited"] == 0 and report["counts"]["escalated_labelled"] > 150


def test_cli_false_keep_on_items_the_certificate_never_decided(tmp_path):
    """The judge still agrees on the items it escalates but dropped to 60% on those it decides;
    read as decisions, ``pred`` would pool them all and keep the certificate."""
    certificate = _certificate(tmp_path)
    threshold = _threshold(certificate)
    rng = np.random.default_rng(7)
    confidence = np.where(rng.random(2000) < 0.15, rng.uniform(threshold, 1, 2000),
                          rng.uniform(0.5, threshold, 2000))
    disagree = rng.random(2000) < np.where(confidence >= threshold, 0.4, 0.0)
    rows = [{"id": str(i), "pred": "a", "confidence": float(c), "human_label": "b" if d else "a"}
            for i, (c, d) in enumerate(zip(confidence, disagree))]
    assert np.mean(disagree) < ALPHA  # pooled over every row, the drop is hidden
    (tmp_path / "audited.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert main(["audit", str(certificate), str(tmp_path / "audited.jsonl"),
                 "--out", str(tmp_path / "o")]) == 3
    report = json.loads((tmp_path / "o" / "audit.json").read_text())
    assert report["counts"]["decided"] == int((confidence >= threshold).sum())


def _grouped_deciding_three_percent(rng, n):
    """Items drawn like a per-group calibration set: agreement 99% above confidence 0.97, 60%
    below, so a certificate at alpha 0.1 decides only about 3% of them."""
    confidence = rng.uniform(0, 1, n)
    groups = np.where(rng.random(n) < 0.5, "chat", "coding").astype(object)
    agree = rng.random(n) < np.where(confidence > 0.97, 0.99, 0.6)
    pred = np.where(rng.random(n) < 0.5, "a", "b").astype(object)
    human = np.where(agree, pred, np.where(pred == "a", "b", "a")).astype(object)
    return confidence, groups, pred, human


def _grouped_audit_table(rng, n=3000):
    confidence, groups, pred, human = _grouped_deciding_three_percent(rng, n)
    return pa.table({"id": [str(i) for i in range(n)], "confidence": confidence,
                     "pred": pred.tolist(), "task": groups.tolist(), "human_label": human.tolist()})


@pytest.fixture(scope="module")
def grouped_certificate():
    confidence, groups, pred, human = _grouped_deciding_three_percent(np.random.default_rng(11), 8000)
    calibrator = GroupedCalibrator(alpha=ALPHA, delta=0.1, n_grid=34, by="task").calibrate(
        confidence, pred, human, groups=groups)
    assert 0.02 < calibrator.coverage_ < 0.04
    return calibrator.certificate(data_hash="h")


def test_cli_no_false_alarm_on_fresh_labels_drawn_like_calibration(tmp_path, grouped_certificate):
    """The issue's false alarm: scored items with confidence and pred, a per-group certificate
    deciding ~3% of them. Read as decisions, pred made all 3000 'decided' (agreement ~61%) and
    the audit rejected (exit 3); the certificate decides ~90 of them, which agree."""
    grouped_certificate.write(tmp_path / "certificate.json")
    pq.write_table(_grouped_audit_table(np.random.default_rng(12)), tmp_path / "audited.parquet")
    assert main(["audit", str(tmp_path / "certificate.json"), str(tmp_path / "audited.parquet"),
                 "--out", str(tmp_path / "o")]) == 0
    report = json.loads((tmp_path / "o" / "audit.json").read_text())
    assert 0.02 * 3000 < report["counts"]["decided"] < 0.04 * 3000
    assert report["n_audited"] == report["counts"]["decided"] and set(report["groups"]) == {"chat", "coding"}
    # without the group column the certificate cannot route an item: refused, not audited pooled
    pq.write_table(_grouped_audit_table(np.random.default_rng(12)).drop(["task"]), tmp_path / "no_group.parquet")
    assert main(["audit", str(tmp_path / "certificate.json"), str(tmp_path / "no_group.parquet")]) == 2


def test_audit_false_alarm_rate_at_most_level_on_fresh_labels(grouped_certificate):
    """Statistically: over 300 fresh draws like the calibration set, the audit (the certificate
    applied to the confidences, each group at level / 2) rejects at most level of the time."""
    from marc_ray.calibrate.audit import audit_by_group
    from marc_ray.calibrate.audit_cli import audited_items

    rng, reps, alarms = np.random.default_rng(13), 300, 0
    for _ in range(reps):
        agree, _, groups, _, _ = audited_items(grouped_certificate, _grouped_audit_table(rng), "t", None)
        alarms += audit_by_group(agree, groups, ALPHA, LEVEL).rejected
    assert alarms / reps <= LEVEL + 3 * np.sqrt(LEVEL * (1 - LEVEL) / reps)


def test_a_verdict_column_is_checked_against_the_certificate(tmp_path, capsys):
    certificate = _certificate(tmp_path)
    threshold = _threshold(certificate)
    rows = _rows(_audited(tmp_path, 0.02))
    honest = [dict(r, verdict="a" if r["confidence"] >= threshold else "escalate") for r in rows]
    (tmp_path / "honest.jsonl").write_text("\n".join(json.dumps(r) for r in honest))
    assert main(["audit", str(certificate), str(tmp_path / "honest.jsonl"), "--out", str(tmp_path / "h")]) == 0
    without = json.loads((tmp_path / "h" / "audit.json").read_text())
    # decisions only (apply's decisions.parquet joined with labels): no pred column needed
    decisions = [{k: v for k, v in r.items() if k != "pred"} for r in honest]
    (tmp_path / "decisions.jsonl").write_text("\n".join(json.dumps(r) for r in decisions))
    assert main(["audit", str(certificate), str(tmp_path / "decisions.jsonl"), "--out", str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "d" / "audit.json").read_text())["n_audited"] == without["n_audited"]
    capsys.readouterr()
    # every row called decided, as pred used to be read: refused, naming the first row that differs
    forged = [dict(r, verdict="a") for r in rows]
    first = next(i for i, r in enumerate(rows) if r["confidence"] < threshold)
    (tmp_path / "forged.jsonl").write_text("\n".join(json.dumps(r) for r in forged))
    assert main(["audit", str(certificate), str(tmp_path / "forged.jsonl"), "--out", str(tmp_path / "f")]) == 2
    error = capsys.readouterr().err
    assert f"row {first}, field 'verdict'" in error and "the certificate escalates this item" in error
    assert not (tmp_path / "f").exists()


def test_a_cascade_audit_routes_through_the_stages(tmp_path):
    from marc_ray.calibrate import CascadeCalibrator
    from marc_ray.calibrate.routing import route

    rng = np.random.default_rng(5)
    n = 4000
    conf = rng.uniform(0.5, 1, (n, 2))
    pred = np.full((n, 2), "a", dtype=object)
    human = np.where(rng.random(n) < conf[:, 1], "a", "b").astype(object)
    cascade = CascadeCalibrator(alpha=ALPHA, delta=0.1).calibrate(conf, pred, human,
                                                                  names=["small", "large"])
    certificate = cascade.certificate(data_hash="h", confidence_names=["conf_simulated", "conf_marc"])
    certificate.write(tmp_path / "certificate.json")
    fresh = rng.uniform(0.5, 1, (1000, 2))
    labels = np.where(rng.random(1000) < 0.97, "a", "b")
    rows = [{"id": str(i), "judge": judge, "pred": "a", "human_label": str(labels[i]),
             "conf_simulated": float(fresh[i, 0]) if l == 0 else None,
             "conf_marc": float(fresh[i, 1]) if l == 1 else None}
            for l, judge in enumerate(["small", "large"]) for i in range(1000)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "audited.parquet")
    assert main(["audit", str(tmp_path / "certificate.json"), str(tmp_path / "audited.parquet"),
                 "--out", str(tmp_path / "o")]) == 0
    report = json.loads((tmp_path / "o" / "audit.json").read_text())
    expected = route(certificate, fresh, np.full((1000, 2), "a", dtype=object)).accepted.sum()
    assert report["counts"]["decided"] == expected and report["counts"]["items"] == 1000
    pq.write_table(pa.Table.from_pylist(rows[:1000]).drop(["judge"]), tmp_path / "one.parquet")
    assert main(["audit", str(tmp_path / "certificate.json"), str(tmp_path / "one.parquet")]) == 2


@pytest.mark.parametrize("row, field, message", [
    ({"id": "x", "verdict": "A", "human_label": "a"}, "verdict", "unknown verdict"),
    ({"id": "x", "pred": "A", "human_label": "a"}, "pred", "unknown pred"),
    ({"id": "x", "human_label": "yes"}, "human_label", "unknown label"),
    ({"id": "x", "week": None}, "week", "missing batch"),
    ({"id": "x", "confidence": 1.5}, "confidence", "outside [0, 1]"),
    ({"id": "ok"}, "id", "appears twice"),
])
def test_cli_bad_input_exits_2_naming_row_and_field(tmp_path, capsys, row, field, message):
    path = tmp_path / "audited.jsonl"
    base = {"pred": "b", "verdict": "b", "confidence": 0.99, "human_label": "a", "week": 1}
    row = {**base, **row}
    path.write_text(json.dumps({"id": "ok", **base, "human_label": "b"}) + "\n" + json.dumps(row) + "\n")
    assert main(["audit", str(_certificate(tmp_path)), str(path), "--out", str(tmp_path / "o"),
                 "--sequential", "--batch-column", "week"]) == 2
    error = capsys.readouterr().err
    assert f"row 1, field '{field}'" in error and message in error
    assert not (tmp_path / "o").exists()


def test_cli_missing_label_or_confidence_column_exits_2(tmp_path, capsys):
    path = tmp_path / "audited.jsonl"
    path.write_text(json.dumps({"id": "x", "pred": "a", "confidence": 0.9}) + "\n")
    assert main(["audit", str(_certificate(tmp_path)), str(path)]) == 2
    assert "field 'human_label': missing column" in capsys.readouterr().err
    path.write_text(json.dumps({"id": "x", "pred": "a", "human_label": "a"}) + "\n")
    assert main(["audit", str(_certificate(tmp_path)), str(path)]) == 2
    assert "field 'confidence': missing column" in capsys.readouterr().err


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
    certificate = GroupedCalibrator(by="task").calibrate(
        conf, np.full(4000, "a", dtype=object), human, groups=cal_groups).certificate(data_hash="h")
    certificate.write(tmp_path / "certificate.json")
    rows = [{"id": str(i), "pred": "a", "confidence": 0.999, "task": g,
             "human_label": "a" if a else "b"} for i, (g, a) in enumerate(zip(groups, agree))]
    (tmp_path / "audited.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert main(["audit", str(tmp_path / "certificate.json"), str(tmp_path / "audited.jsonl"),
                 "--out", str(tmp_path / "o")]) == 3
    report = json.loads((tmp_path / "o" / "audit.json").read_text())
    assert report["test"] == "per-group exact" and report["groups"]["coding"]["rejected"]
