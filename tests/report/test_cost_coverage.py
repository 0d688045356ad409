"""Cost beside coverage (calibrate.cost_coverage, the report's "Cost beside coverage"): the
cascade's expected cost per item and certified coverage, each judge alone, the frontier; the
numbers checked against the certificate."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marc_ray.calibrate.calibrator import SelectiveCalibrator
from marc_ray.calibrate.config import CalibrateConfig
from marc_ray.calibrate.cost_coverage import cost_coverage, expected_cost, frontier, reach_shares
from marc_ray.calibrate.grid import ThresholdGrid
from marc_ray.calibrate.stage import calibrate_stage
from marc_ray.contracts import JUDGE_METADATA_KEY, Certificate, ItemSet
from marc_ray.report import ReportInputs, write_report
from marc_ray.report.summary import summarize
from report_toys import toy_items


def _items(stages, human, name="calibration"):
    return ItemSet(name, np.stack([s[1] for s in stages], axis=1),
                   np.stack([s[2] for s in stages], axis=1), human)


def _with_costs(certificate, costs: dict):
    return dataclasses.replace(certificate, extra={**(certificate.extra or {}), "costs": costs})


def test_the_cascades_cost_and_coverage_are_the_certificates(cascade):
    """Coverage is the certificate's; the expected cost is the sum of cost x share reaching each
    stage, the shares read off the certificate's own route counts."""
    certificate, stages, human = cascade
    priced = _with_costs(certificate, {"small": 1.0, "large": 10.0})
    figures = summarize(ReportInputs(priced, _items(stages, human)))["cost_coverage"]
    cascade_row = figures["rows"][0]
    assert cascade_row["kind"] == "cascade" and figures["costs_given"]
    on_calibration = cascade_row["sets"]["calibration"]
    assert on_calibration["coverage"] == pytest.approx(certificate.coverage)
    decided_small, _, _ = certificate.extra["route_counts"]
    reach_large = 1 - decided_small / len(human)
    assert on_calibration["cost"] == pytest.approx(1.0 + 10.0 * reach_large)
    assert cascade_row["thresholds"] == [s["threshold"] for s in certificate.stages]
    # each judge alone: certified with the whole delta on the same items, run on every item
    grid = ThresholdGrid(certificate.grid["values"], kind="fixed")
    for row, (name, confidence, pred), cost in zip(figures["rows"][1:], stages, (1.0, 10.0)):
        alone = SelectiveCalibrator(alpha=certificate.alpha, delta=certificate.delta,
                                    grid=grid).calibrate(confidence, pred, human)
        assert row["name"] == name and row["thresholds"] == [alone.threshold_]
        assert row["sets"]["calibration"]["coverage"] == pytest.approx(alone.coverage_)
        assert row["sets"]["calibration"]["cost"] == cost
    points = {r["name"]: (r["sets"]["calibration"]["cost"], r["sets"]["calibration"]["coverage"])
              for r in figures["rows"]}
    assert figures["frontier"] == frontier(points) and figures["frontier"]


def test_without_costs_the_axis_counts_judge_calls(cascade):
    certificate, stages, human = cascade
    test = [(n, *toy_items(400, seed=9)[:2]) for n, _, _ in stages]
    figures = cost_coverage(certificate, _items(stages, human),
                            _items(test, toy_items(400, seed=9)[2], "test"))
    assert not figures["costs_given"] and figures["unit"] == "judge calls per item"
    assert figures["costs"] == {"small": 1.0, "large": 1.0}
    for set_name in ("calibration", "test"):
        row = figures["rows"][0]["sets"][set_name]
        assert 1.0 <= row["cost"] <= 2.0  # the first judge always runs, the second on the rest
    assert [r["sets"]["calibration"]["cost"] for r in figures["rows"][1:]] == [1.0, 1.0]


def test_frontier_keeps_what_nothing_beats():
    points = {"cascade": (3.6, 0.90), "weak": (1.0, 0.0), "middle": (3.0, 0.94), "strong": (30.0, 1.0)}
    assert frontier(points) == ["weak", "middle", "strong"]  # the cascade: middle is cheaper and decides more
    assert reach_shares(np.array([0, 1, -1, 0]), 2).tolist() == [1.0, 0.5]
    assert expected_cost([1, 10], [1.0, 0.5]) == 6.0
    with pytest.raises(ValueError, match="2 costs for 3 stages"):
        expected_cost([1, 2], [1, 1, 1])


def test_the_report_shows_the_frontier_and_says_when_no_costs_were_given(cascade, single, tmp_path):
    certificate, stages, human = cascade
    paths = write_report(ReportInputs(certificate, _items(stages, human)), tmp_path / "plain")
    page = open(paths["html"], encoding="utf-8").read()
    assert "Cost beside coverage" in page and "No costs were given (calibrate.costs)" in page
    assert (tmp_path / "plain" / "figures" / "cost_coverage.png").stat().st_size > 5000
    priced = _with_costs(certificate, {"small": 1.0, "large": 10.0})
    paths = write_report(ReportInputs(priced, _items(stages, human)), tmp_path / "priced")
    report = json.loads(open(paths["json"]).read())
    markdown = open(paths["markdown"]).read()
    expected = report["cost_coverage"]["rows"][0]["sets"]["calibration"]["cost"]
    assert "Cost per item of each judge (calibrate.costs): small 1, large 10." in markdown
    assert f"| {report['cost_coverage']['rows'][0]['name']} |" in markdown and f"{expected:.4g}" in markdown
    # one judge: nothing to compare, no section
    single_certificate, (confidence, pred, labels) = single
    paths = write_report(ReportInputs(single_certificate, ItemSet("calibration", confidence, pred, labels)),
                         tmp_path / "single")
    assert "Cost beside coverage" not in open(paths["html"], encoding="utf-8").read()
    assert json.loads(open(paths["json"]).read())["cost_coverage"] is None


def test_the_pipeline_records_calibrate_costs_in_the_certificate(tmp_path):
    paths = []
    for l in range(2):
        rng = np.random.default_rng(l)
        confidence = rng.uniform(0.5, 1.0, 600)
        human = np.random.default_rng(99).choice(["a", "b"], 600)
        agree = rng.random(600) < 0.3 + 0.7 * confidence
        table = pa.table({"id": [f"i{i}" for i in range(600)], "judge": [f"judge{l}"] * 600,
                          "pred": np.where(agree, human, np.where(human == "a", "b", "a")).tolist(),
                          "conf_simulated": confidence, "human_label": human.tolist(),
                          "split": ["calibration"] * 600})
        path = tmp_path / f"judge{l}.parquet"
        pq.write_table(table.replace_schema_metadata(
            {JUDGE_METADATA_KEY: json.dumps({"name": f"judge{l}"}).encode()}), path)
        paths.append(str(path))
    out = str(tmp_path / "certificate.json")
    calibrate_stage(CalibrateConfig(confidence="conf_simulated", costs=[1, 10]), ["judge0", "judge1"],
                    paths, out, model_folders=[None, None])
    assert Certificate.read(out).extra["costs"] == {"judge0": 1.0, "judge1": 10.0}


def test_a_grouped_cascade_compares_each_judge_certified_per_group():
    from marc_ray.calibrate.generated import piled_up_groups
    from marc_ray.calibrate.groups import GroupedCalibrator

    data = piled_up_groups({"A": 500, "B": 400}, seed=3)
    names = ["weak", "strong"]
    grouped = GroupedCalibrator(alpha=0.15, delta=0.1).calibrate(
        data["confidence"], data["pred"], data["human_label"], groups=data["groups"], names=names)
    certificate = grouped.certificate("sha256:toy", confidence_names=["conf_simulated"] * 2)
    items = ItemSet("calibration", data["confidence"], data["pred"], data["human_label"],
                    groups=data["groups"])
    figures = cost_coverage(certificate, items, costs=[1.0, 10.0])
    assert figures["rows"][0]["sets"]["calibration"]["coverage"] == pytest.approx(certificate.coverage)
    for j, row in enumerate(figures["rows"][1:]):
        alone = GroupedCalibrator(alpha=0.15, delta=0.1, grid=ThresholdGrid(certificate.grid["values"], kind="fixed")
                                  ).calibrate(data["confidence"][:, j], data["pred"][:, j],
                                              data["human_label"], groups=data["groups"])
        assert row["thresholds"] == {g: float(t[0]) for g, t in alone.thresholds_.items()}
        assert row["sets"]["calibration"]["coverage"] == pytest.approx(alone.coverage_)
    assert "per group" in figures["judges_alone"]
