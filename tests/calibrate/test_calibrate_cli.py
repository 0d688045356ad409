"""``marc-ray calibrate`` / ``marc-ray validity`` end to end, and every error path.

Each error must exit with status 2, name what is wrong (file, row, field or flag) and leave
no output folder behind.
"""

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marc_ray import cli
from marc_ray.calibrate import SelectiveCalibrator
from marc_ray.cli import main
from marc_ray.contracts import Certificate


ALL_STAGES = {"test_calibrate_end_to_end_jsonl"}


@pytest.fixture(autouse=True)
def only_calibration_commands(request, monkeypatch):
    """Build the real ``marc-ray`` parser with just this stage's commands: other stages' parsers
    are not under test here (and some take seconds to build). One test keeps every stage."""
    if request.node.originalname not in ALL_STAGES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", ("marc_ray.calibrate.cli",))


def _rows(n_items=1500, seed=0, split=False):
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n_items)
    pred = rng.choice(["a", "b"], n_items)
    agree = rng.random(n_items) < confidence
    rows = []
    for i in range(n_items):
        human = pred[i] if agree[i] else ("b" if pred[i] == "a" else "a")
        if i % 37 == 0:
            human = "tie"
        row = {"id": f"item-{i}", "conf": float(confidence[i]), "pred": str(pred[i]),
               "human_label": human, "group": f"prompt-{i % 150}"}
        if split:
            row["split"] = "calibration" if i % 3 else "test"
        rows.append(row)
    return rows


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def scores(tmp_path):
    return _write_jsonl(tmp_path / "scores.jsonl", _rows())


def test_calibrate_end_to_end_jsonl(scores, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["calibrate", str(scores), "--confidence-column", "conf", "--alpha", "0.1",
                 "--delta", "0.1", "--out", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["certificate.json", "summary.json"]
    printed = capsys.readouterr().out
    assert "With 90% confidence, the judge agrees with the human labels on at least 90%" in printed
    certificate = Certificate.read(out / "certificate.json")
    rows = _rows()
    confidence = np.array([r["conf"] for r in rows])
    pred = np.array([r["pred"] for r in rows], dtype=object)
    human = np.array([r["human_label"] for r in rows], dtype=object)
    expected = SelectiveCalibrator(alpha=0.1, delta=0.1).calibrate(confidence, pred, human)
    assert certificate.stages[0]["threshold"] == expected.threshold_
    assert certificate.stages[0]["confidence"] == "conf"
    assert certificate.n_calibration == 1500 and certificate.data_hash.startswith("sha256:")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_ties_dropped"] == sum(r["human_label"] == "tie" for r in rows)
    assert summary["results"][0]["coverage"] == pytest.approx(expected.coverage_)


def test_calibrate_parquet_several_alphas_and_procedures(tmp_path, capsys):
    path = tmp_path / "scores.parquet"
    pq.write_table(pa.Table.from_pylist(_rows(seed=1)), path)
    out = tmp_path / "out"
    code = main(["calibrate", str(path), "--confidence-column", "conf", "--alpha", "0.1",
                 "--alpha", "0.2", "--procedure", "holm", "--n-grid", "100", "--min-n", "40",
                 "--tie-policy", "disagree", "--out", str(out)])
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["certificate.json", "certificate_alpha-0.1.json", "certificate_alpha-0.2.json",
                     "summary.json"]
    first = Certificate.read(out / "certificate_alpha-0.1.json")
    second = Certificate.read(out / "certificate_alpha-0.2.json")
    assert first.procedure == "holm" and first.tie_policy == "disagree"
    assert first.grid["n_points"] == 100 and first.extra["min_n"] == 40
    assert second.stages[0]["threshold"] <= first.stages[0]["threshold"]
    assert Certificate.read(out / "certificate.json").alpha == 0.1
    assert capsys.readouterr().out.lower().count("with 90% confidence") == 2


def test_calibration_split_column(tmp_path, capsys):
    path = _write_jsonl(tmp_path / "scores.jsonl", _rows(split=True))
    out = tmp_path / "out"
    assert main(["calibrate", str(path), "--confidence-column", "conf", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_calibration"] == sum(1 for i in range(1500) if i % 3)
    assert summary["calibration_rows"] == "rows with split == 'calibration'"
    assert main(["calibrate", str(path), "--confidence-column", "conf", "--calibration-split",
                 "test", "--out", str(tmp_path / "o2")]) == 0
    assert json.loads((tmp_path / "o2" / "summary.json").read_text())["n_calibration"] == 500


def test_validity_end_to_end(scores, tmp_path, capsys):
    out = tmp_path / "validity"
    code = main(["validity", str(scores), "--confidence-column", "conf", "--design", "split",
                 "--repetitions", "300", "--seed", "3", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "validity.json").read_text())
    assert report["design"] == "split" and report["grouped"] is True
    assert report["n_repetitions"] == 300 and len(report["repetitions"]["success"]) == 300
    low, high = report["success_interval_95"]
    assert low <= report["success_rate"] <= high
    assert "In 300 split repetitions" in capsys.readouterr().out
    assert main(["validity", str(scores), "--confidence-column", "conf", "--design", "population",
                 "--repetitions", "200", "--calibration-size", "600", "--out", str(tmp_path / "p")]) == 0
    report = json.loads((tmp_path / "p" / "validity.json").read_text())
    assert report["calibration_size"] == 600 and report["grouped"] is False


def test_items_without_a_verdict_are_kept_and_never_accepted(tmp_path, capsys):
    """pred null (the judge gave no verdict; confidence null): never accepted, still counted."""
    rows = _rows()
    for row in rows[::10]:
        row["pred"], row["conf"] = None, None
    path = _write_jsonl(tmp_path / "scores.jsonl", rows)
    assert main(["calibrate", str(path), "--confidence-column", "conf", "--out",
                 str(tmp_path / "out")]) == 0
    certificate = Certificate.read(tmp_path / "out" / "certificate.json")
    with_verdict = [r for r in rows if r["pred"] is not None]
    expected = SelectiveCalibrator(alpha=0.1, delta=0.1).calibrate(
        [r["conf"] for r in with_verdict], [r["pred"] for r in with_verdict],
        [r["human_label"] for r in with_verdict])
    stage = certificate.stages[0]
    assert (stage["threshold"], stage["n"], stage["k"]) == (expected.threshold_, expected.n_, expected.k_)
    assert certificate.n_calibration == len(rows)
    assert certificate.coverage == pytest.approx(expected.coverage_ * len(with_verdict) / len(rows))
    assert main(["validity", str(path), "--confidence-column", "conf", "--repetitions", "200",
                 "--out", str(tmp_path / "validity")]) == 0


def _broken(kind):
    rows = _rows(n_items=300)
    if kind == "missing column":
        for row in rows:
            del row["pred"]
    elif kind == "label outside the set":
        rows[17]["human_label"] = "both"
    elif kind == "verdict outside the set":
        rows[5]["pred"] = "tie"
    elif kind == "NaN confidence":
        rows[9]["conf"] = math.nan
    elif kind == "confidence above 1":
        rows[12]["conf"] = 1.5
    elif kind == "negative confidence":
        rows[3]["conf"] = -0.2
    elif kind == "duplicate ids":
        rows[40]["id"] = rows[2]["id"]
    elif kind == "too small":
        rows = rows[:15]
    return rows


BROKEN = [
    ("missing column", ["field 'pred'", "missing column"]),
    ("label outside the set", ["row 17", "field 'human_label'", "'both'"]),
    ("verdict outside the set", ["row 5", "field 'pred'"]),
    ("NaN confidence", ["row 9", "field 'conf'", "nan"]),
    ("confidence above 1", ["row 12", "field 'conf'", "1.5"]),
    ("negative confidence", ["row 3", "field 'conf'"]),
    ("duplicate ids", ["row 40", "field 'id'", "duplicate id 'item-2'"]),
    ("too small", ["usable items", "at least 22 are needed"]),
]


@pytest.mark.parametrize("command", ["calibrate", "validity"])
@pytest.mark.parametrize("kind, expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_bad_scores_exit_2_and_write_nothing(command, kind, expected, tmp_path, capsys):
    path = _write_jsonl(tmp_path / "scores.jsonl", _broken(kind))
    out = tmp_path / "out"
    args = [command, str(path), "--confidence-column", "conf", "--out", str(out)]
    if command == "validity" and kind == "too small":
        args += ["--calibration-size", "15", "--design", "population"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"marc-ray {command}: error: {path}")
    for fragment in expected:
        assert fragment in error
    assert not out.exists()


@pytest.mark.parametrize("content, expected", [
    ("", ["the file has no rows"]),
    ('{"id": "a", "conf": 0.9}\n{"id": "b", "conf": \n', ["row 1", "malformed JSON line"]),
])
def test_empty_or_malformed_file(content, expected, tmp_path, capsys):
    path = tmp_path / "scores.jsonl"
    path.write_text(content)
    out = tmp_path / "out"
    assert main(["calibrate", str(path), "--confidence-column", "conf", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert str(path) in error and all(fragment in error for fragment in expected)
    assert not out.exists()


def test_missing_file_and_empty_split(scores, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["calibrate", str(tmp_path / "nope.jsonl"), "--out", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["calibrate", str(scores), "--confidence-column", "conf", "--calibration-split",
                 "calibration", "--out", str(out)]) == 2
    assert "has no such column" in capsys.readouterr().err
    path = _write_jsonl(tmp_path / "split.jsonl", _rows(split=True))
    assert main(["calibrate", str(path), "--confidence-column", "conf", "--calibration-split",
                 "holdout", "--out", str(out)]) == 2
    assert "no row has split == 'holdout'" in capsys.readouterr().err
    assert not out.exists()


# one check per value, with the one message: CalibrateConfig.validate's (a config file's too)
@pytest.mark.parametrize("flag, value, message", [
    ("--alpha", "0", "argument --alpha: calibrate.alpha must be a number in (0, 1) (e.g. 0.15: "
                     "at least 85% agreement), got 0.0"),
    ("--alpha", "1.2", "argument --alpha: calibrate.alpha must be a number in (0, 1)"),
    ("--delta", "1", "argument --delta: calibrate.delta must be a number in (0, 1) (e.g. 0.1: 90% "
                     "confidence), got 1.0"),
    ("--delta", "-0.1", "argument --delta: calibrate.delta must be a number in (0, 1)"),
    ("--alpha", "ten", "argument --alpha: invalid float value: 'ten'"),
    ("--grid-size", "0", "argument --n-grid/--grid-size: calibrate.n_grid must be an integer from 1 "
                         "to 1,000,000, got 0"),
    ("--min-n", "some", "argument --min-n: invalid N|auto value: 'some'"),
    ("--min-n", "0", "argument --min-n: calibrate.min_n must be 'auto' or an integer >= 1, got 0"),
    ("--tie-policy", "keep", "argument --tie-policy: calibrate.tie_policy must be one of "
                             "['disagree', 'drop'], got 'keep'"),
])
@pytest.mark.parametrize("command", ["calibrate", "validity"])
def test_bad_parameters_exit_2(command, flag, value, message, scores, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main([command, str(scores), "--confidence-column", "conf", flag, value, "--out", str(out)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_out_is_a_file(scores, tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("x")
    assert main(["calibrate", str(scores), "--confidence-column", "conf", "--out", str(out)]) == 2
    assert "field '--out': must be a folder" in capsys.readouterr().err
    assert out.read_text() == "x"


def test_help_explains_the_guarantee(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["calibrate", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for fragment in ("1 - delta", "1 - alpha", "escalated", "nothing is accepted", "certificate.json"):
        assert fragment in text
    with pytest.raises(SystemExit):
        main(["validity", "--help"])
    assert "population" in capsys.readouterr().out


def test_calibrate_by_group_writes_a_per_group_certificate(tmp_path, capsys):
    rows = _rows(n_items=3000)
    for i, row in enumerate(rows):
        row["task"] = "coding" if i % 2 else "chat"
        if i < 12:
            row["task"] = "legal"
    path = tmp_path / "scores.jsonl"
    _write_jsonl(path, rows)
    out = tmp_path / "out"
    assert main(["calibrate", str(path), "--confidence-column", "conf", "--by", "task",
                 "--out", str(out)]) == 0
    certificate = Certificate.read(out / "certificate.json")
    values = certificate.groups["values"]
    assert set(values) == {"chat", "coding", "legal"} and certificate.groups["column"] == "task"
    assert all(v["delta"] == pytest.approx(0.1 / 3) for v in values.values())
    assert values["legal"]["abstains"] and float(values["legal"]["labels_needed"]["n_labelled"]) > 12
    assert not values["coding"]["abstains"] and float(values["coding"]["stages"][0]["threshold"]) < 1
    assert "task='legal'" in capsys.readouterr().out
    rows[5]["task"] = None
    _write_jsonl(path, rows)
    assert main(["calibrate", str(path), "--confidence-column", "conf", "--by", "task",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "row 5, field 'task': missing group" in capsys.readouterr().err
    assert main(["calibrate", str(path), "--confidence-column", "conf", "--by", "nope",
                 "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_validity_by_group(tmp_path, capsys):
    rows = _rows(n_items=2000)
    for i, row in enumerate(rows):
        row["task"] = "coding" if i % 2 else "chat"
    path = _write_jsonl(tmp_path / "scores.jsonl", rows)
    assert main(["validity", str(path), "--confidence-column", "conf", "--by", "task",
                 "--repetitions", "200", "--out", str(tmp_path / "v")]) == 0
    report = json.loads((tmp_path / "v" / "validity.json").read_text())
    assert set(report["per_group"]) == {"chat", "coding"} and report["by"] == "task"
    assert report["joint"]["success_rate"] >= 0.8
    assert "Per-group thresholds kept every group's promise" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["single", "grouped", "cascade"])
@pytest.mark.parametrize("tie_policy", ["drop", "disagree"])
def test_every_closing_line_states_the_ties_dropped(kind, tie_policy, tmp_path, capsys):
    """The closing line read the ties dropped from the single-judge calibrator only, so a
    cascade's or a grouped certificate's line said "all used" while ties were dropped (issue 20).
    Every kind now states "N calibration items, M ties dropped (policy drop), K used", and the
    line, summary.json and the certificate agree with the data."""
    rows = _rows(n_items=1200, seed=4)
    for i, row in enumerate(rows):
        row["task"] = "coding" if i % 2 else "chat"
    first = _write_jsonl(tmp_path / "cheap.jsonl", rows)
    args = [str(first)]
    if kind == "grouped":
        args += ["--by", "task"]
    if kind == "cascade":
        other = _rows(n_items=1200, seed=5)  # another judge on the same items and labels
        for row, mine in zip(other, rows):
            row["human_label"] = mine["human_label"]
        args += [str(_write_jsonl(tmp_path / "strong.jsonl", other)), "--cascade"]
    out = tmp_path / "out"
    assert main(["calibrate", *args, "--confidence-column", "conf", "--tie-policy", tie_policy,
                 "--out", str(out)]) == 0
    n_ties = sum(r["human_label"] == "tie" for r in rows)
    assert n_ties == 33  # every 37th item
    dropped = n_ties if tie_policy == "drop" else 0
    closing = capsys.readouterr().out.strip().splitlines()[-1]
    if dropped:
        assert closing.startswith(f"(calibrated on 1200 calibration items, {dropped} ties dropped "
                                  f"(policy drop), {1200 - dropped} used: ")
    else:
        assert closing.startswith("(calibrated on 1200 calibration items, all used: ")
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["n_calibration"], summary["n_ties_dropped"], summary["n_used"]) == \
        (1200, dropped, 1200 - dropped)
    certificate = Certificate.read(out / "certificate.json")
    assert certificate.n_calibration == 1200
    assert (certificate.extra["n_ties_dropped"], certificate.extra["n_used"]) == (dropped, 1200 - dropped)
