"""apply: verdict or escalate per item with the deciding judge, and the drift check."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marc_ray.apply import apply_certificate
from marc_ray.calibrate.routing import ESCALATE, route
from marc_ray.cli import main
from marc_ray.contracts import ContractError, write_table_atomic

from report_toys import toy_items


def scored_table(confidence, pred, human=None, column="conf_marc", judge=None, prefix="new"):
    data = {"id": [f"{prefix}-{i}" for i in range(len(confidence))], "pred": list(pred),
            column: np.asarray(confidence, dtype=float)}
    if human is not None:
        data["human_label"] = list(human)
    if judge is not None:
        data["judge"] = [judge] * len(confidence)
    return pa.table(data)


def test_route_single_judge(single):
    certificate, _ = single
    threshold = certificate.stages[0]["threshold"]
    confidence = np.array([[threshold], [threshold - 1e-9], [np.nan], [1.0], [1.0]])
    pred = np.array([["a"], ["b"], ["a"], [None], ["b"]], dtype=object)
    routing = route(certificate, confidence, pred)
    assert routing.stage.tolist() == [0, -1, -1, -1, 0]  # at lambda-hat: accepted; NaN / no verdict: never
    assert routing.verdict.tolist() == ["a", ESCALATE, ESCALATE, ESCALATE, "b"]
    with pytest.raises(ValueError, match=r"must both be \(n_items, 1\)"):
        route(certificate, np.ones((3, 2)), np.full((3, 2), "a", dtype=object))


def test_abstaining_certificate_escalates_everything(abstaining):
    certificate, (confidence, pred, _) = abstaining
    routing = route(certificate, confidence[:, None], pred[:, None])
    assert (routing.stage == -1).all() and set(routing.verdict) == {ESCALATE}


def test_route_cascade_takes_the_first_confident_judge(cascade):
    certificate, _, _ = cascade
    t_small, t_large = (float(s["threshold"]) for s in certificate.stages)
    assert np.isfinite(t_small) and np.isfinite(t_large)
    confidence = np.array([[t_small, 1.0], [t_small - 1e-6, t_large], [0.0, t_large - 1e-6]])
    pred = np.array([["a", "b"], ["a", "b"], ["a", "b"]], dtype=object)
    routing = route(certificate, confidence, pred)
    assert routing.stage.tolist() == [0, 1, -1]
    assert routing.verdict.tolist() == ["a", "b", ESCALATE]


def test_apply_certificate_with_drift(single):
    certificate, _ = single
    threshold = certificate.stages[0]["threshold"]
    confidence, pred, _ = toy_items(300, seed=7)
    decisions, summary = apply_certificate(certificate, scored_table(confidence, pred))
    accepted = confidence >= threshold
    assert decisions.column("verdict").to_pylist() == [p if a else ESCALATE for p, a in zip(pred, accepted)]
    assert decisions.column("decided_by").to_pylist() == ["toy-judge" if a else None for a in accepted]
    assert summary["coverage"] == pytest.approx(accepted.mean())
    assert summary["by_stage"] == {"toy-judge": int(accepted.sum())}
    assert not summary["drift"]["toy-judge"]["fired"]
    shifted, pred2, _ = toy_items(300, seed=8, shift=-0.25)
    _, drifted = apply_certificate(certificate, scored_table(shifted, pred2))
    assert drifted["drift"]["toy-judge"]["fired"]
    assert "WARNING" in drifted["drift"]["toy-judge"]["message"]
    p_value = drifted["drift"]["toy-judge"]["p_value"]  # a run's calibrate.drift_significance
    _, strict = apply_certificate(certificate, scored_table(shifted, pred2), drift_significance=p_value / 2)
    assert not strict["drift"]["toy-judge"]["fired"] and strict["drift"]["toy-judge"]["significance"] == p_value / 2


def test_apply_long_format_cascade(cascade):
    certificate, stages, _ = cascade
    tables = [scored_table(conf, pred, judge=name) for name, conf, pred in stages]
    table = pa.concat_tables(tables)
    decisions, summary = apply_certificate(certificate, table)
    confidence = np.stack([s[1] for s in stages], axis=1)
    pred = np.stack([s[2] for s in stages], axis=1)
    expected = route(certificate, confidence, pred)
    assert decisions.column("stage").to_pylist() == expected.stage.tolist()
    assert sum(summary["by_stage"].values()) + summary["escalated"] == len(stages[0][1])


def test_apply_errors_name_the_problem(single, cascade):
    certificate, _ = single
    with pytest.raises(ContractError, match=r"field 'conf_marc'.*missing the confidence column"):
        apply_certificate(certificate, scored_table([0.9], ["a"], column="conf_other"))
    cascade_certificate, stages, _ = cascade
    only_small = scored_table(stages[0][1], stages[0][2], judge="small")
    other = scored_table([0.9], ["a"], judge="tiny", prefix="x")
    with pytest.raises(ContractError, match=r"no rows for judge 'large'"):
        apply_certificate(cascade_certificate, pa.concat_tables([only_small, other]))


def test_apply_cli(single, tmp_path, capsys):
    certificate, _ = single
    certificate.write(tmp_path / "certificate.json")
    confidence, pred, _ = toy_items(50, seed=9)
    write_table_atomic(scored_table(confidence, pred), tmp_path / "new.parquet")
    assert main(["apply", str(tmp_path / "certificate.json"), str(tmp_path / "new.parquet"),
                 "--out", str(tmp_path / "out")]) == 0
    decisions = pq.read_table(tmp_path / "out" / "decisions.parquet")
    assert decisions.num_rows == 50
    summary = json.loads((tmp_path / "out" / "apply_summary.json").read_text())
    assert summary["n"] == 50 and "drift" in summary
    assert "decided" in capsys.readouterr().out
    assert main(["apply", str(tmp_path / "missing.json"), str(tmp_path / "new.parquet"),
                 "--out", str(tmp_path / "o2")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_python_api_and_cli_route_an_item_without_a_verdict_alike(tmp_path):
    """Items with full confidence but no verdict (pred None): the calibrators' Python API and
    ``marc-ray apply`` both escalate them, and route every other item the same way too."""
    from marc_ray.calibrate.calibrator import SelectiveCalibrator
    from marc_ray.calibrate.cascade import CascadeCalibrator
    from marc_ray.calibrate.grid import fixed_grid

    confidence, pred, human = toy_items(2000, seed=11)
    grid = fixed_grid(100, 0.5, 1.0)
    new_conf, new_pred, _ = toy_items(60, seed=12)
    new_conf[:5], new_pred[:5] = 1.0, None  # confident, but no verdict
    new_pred = new_pred.astype(object)

    single = SelectiveCalibrator(alpha=0.15, delta=0.1, grid=grid).calibrate(confidence, pred, human,
                                                                            names=["one"])
    assert single.threshold_ < 1.0
    large_conf, large_pred = _second_judge(human, seed=13)
    cascade = CascadeCalibrator(alpha=0.2, delta=0.1, grid=grid).calibrate(
        [confidence, large_conf], [pred, large_pred], human, names=["small", "large"])
    assert np.isfinite(cascade.thresholds_).all()
    second_conf, second_pred = _second_judge(np.where(new_pred == None, "a", new_pred), seed=14)  # noqa: E711
    second_pred[:5:2] = None  # items 0, 2, 4: no verdict from either judge

    single.certificate("sha256:t", confidence_names=["conf_marc"]).write(tmp_path / "single.json")
    write_table_atomic(scored_table(new_conf, new_pred), tmp_path / "one.parquet")
    cascade.certificate("sha256:t", confidence_names=["conf_marc", "conf_marc"]).write(tmp_path / "cascade.json")
    write_table_atomic(pa.concat_tables([scored_table(new_conf, new_pred, judge="small"),
                                         scored_table(second_conf, second_pred, judge="large")]),
                       tmp_path / "two.parquet")
    for name, data in (("single", "one"), ("cascade", "two")):
        assert main(["apply", str(tmp_path / f"{name}.json"), str(tmp_path / f"{data}.parquet"),
                     "--out", str(tmp_path / name)]) == 0
    cli_single = pq.read_table(tmp_path / "single" / "decisions.parquet").column("stage").to_pylist()
    cli_cascade = pq.read_table(tmp_path / "cascade" / "decisions.parquet").column("stage").to_pylist()

    api_single = np.where(single.accept(new_conf, pred=new_pred), 0, -1)
    api_cascade = cascade.route([new_conf, second_conf], [new_pred, second_pred]).stage
    assert cli_single == api_single.tolist()
    assert cli_cascade == api_cascade.tolist()
    assert api_single[:5].tolist() == [-1] * 5           # stage 1 never takes an item without a verdict
    assert (api_cascade[:5] != 0).all()
    assert api_cascade[[0, 2, 4]].tolist() == [-1] * 3      # no verdict from any judge: escalated
    assert single.accept(new_conf[:5]).all()                 # confidence alone would have taken them


def _second_judge(human, seed):
    """A more accurate judge on the same items: agrees with probability confidence ** 0.2."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, len(human))
    agree = rng.random(len(human)) < confidence ** 0.2
    flip = {"a": "b", "b": "a", "tie": "a"}
    return confidence, np.array([("a" if h == "tie" else h) if ok else flip[h]
                                 for h, ok in zip(human, agree)], dtype=object)
