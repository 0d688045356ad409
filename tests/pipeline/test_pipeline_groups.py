"""The pipeline with ``calibrate.by: group`` and ``calibrate.confidence: auto``, end to end.

A replay judge (no engine, no Ray) on the demo data with ``group`` = the item's kind: right and
confident on sums and capitals, often wrong on facts. One run fits MARC locally, chooses the
measure on the fitted model's validation part of the training split, certifies a threshold per
group, and reports it; apply then routes new items by group and escalates an unseen one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from marc_ray.apply import apply_certificate
from marc_ray.config import PipelineConfig
from marc_ray.contracts import Certificate, read_table
from marc_ray.pipeline import run_pipeline
from marc_ray.run_folder import RunFolder

from grouped_scenario import run_scenario, write_scenario


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("groups")
    return run_scenario(folder, write_scenario(folder))


def test_auto_records_its_choice_made_on_training_data_only(run):
    _, config, result = run
    certificate = Certificate.read(result["certificate"])
    choice = certificate.extra["confidence_choice"]
    assert choice["candidates"] == ["conf_predictive", "conf_simulated", "conf_marc"]
    assert choice["choice"] in choice["candidates"]
    assert certificate.stages[0]["confidence"] == choice["choice"]
    assert set(choice["scores"]) == set(choice["candidates"]) and choice["ranking"][0] == choice["choice"]
    assert choice["validation"].startswith("the fitted model's validation part")
    # the choice read only the fitted model's validation items, all of the training split
    model = json.loads(Path(RunFolder(config.run_dir).model_folder("replayed"), "config.json").read_text())
    scores = read_table(RunFolder(config.run_dir).scores("replayed"))
    split = dict(zip(scores.column("id").to_pylist(), scores.column("split").to_pylist()))
    assert model["valid_ids"] and {split[i] for i in model["valid_ids"]} == {"train"}
    assert 0 < choice["n_validation"] <= len(model["valid_ids"])
    assert choice["n_calibration"] == list(split.values()).count("calibration")


def test_a_threshold_per_group_and_the_report_shows_them(run):
    _, config, result = run
    certificate = Certificate.read(result["certificate"])
    record = certificate.groups
    assert record["column"] == "group" and set(record["values"]) <= {"sum", "capital", "fact"}
    assert len(record["values"]) >= 2
    assert all(stage["threshold"] == float("inf") for stage in certificate.stages)
    assert sum(v["delta"] for v in record["values"].values()) == pytest.approx(0.2)
    text = Path(RunFolder(config.run_dir).report_dir, "report.md").read_text()
    for heading in ("## Per-group certificates", "### Choice of the confidence measure",
                    "### Margin gamma per epoch", "One threshold per group"):
        assert heading in text
    report = json.loads(Path(RunFolder(config.run_dir).report_dir, "report.json").read_text())
    assert len(report["fit"]["replayed"]["gamma_history"]) == 5
    assert report["fit"]["replayed"]["best_epoch"] in range(5) and "| kept epoch |" in text
    assert set(report["groups"]["groups"]) >= set(record["values"])


def test_apply_routes_by_group_and_escalates_an_unseen_group(run):
    _, config, result = run
    certificate = Certificate.read(result["certificate"])
    scores = read_table(RunFolder(config.run_dir).scores("replayed"))
    groups = scores.column("group").to_pylist()
    renamed = ["legal" if i % 5 == 0 else g for i, g in enumerate(groups)]
    table = scores.set_column(scores.column_names.index("group"), "group",
                              __import__("pyarrow").array(renamed))
    decisions, summary = apply_certificate(certificate, table)
    reasons = decisions.column("reason").to_pylist()
    legal = np.asarray(decisions.column("group").to_pylist()) == "legal"
    assert legal.sum() == len(groups[::5])
    assert set(np.asarray(reasons)[legal]) == {"group 'legal' was not in the calibration set"}
    assert summary["by_group"]["legal"]["decided"] == 0 and summary["by_group"]["legal"]["unseen"]
    # every other item is decided exactly by its own group's threshold
    confidence = certificate.stages[0]["confidence"]
    conf = dict(zip(scores.column("id").to_pylist(), scores.column(confidence).to_pylist()))
    for row in decisions.filter(pc.invert(pc.equal(decisions.column("group"), "legal"))).to_pylist():
        threshold = certificate.groups["values"].get(row["group"], {"stages": [{"threshold": np.inf}]}
                                                     )["stages"][0]["threshold"]
        value = conf[row["id"]]
        assert (row["stage"] == 0) == (value is not None and value >= float(threshold))
    assert summary["by_reason"]["unseen_group"] == legal.sum()


def test_config_validates_by_and_auto():
    base = {"data": {"demo": {"n_items": 40}}}
    config = PipelineConfig.from_dict({**base, "calibrate": {"by": "group", "confidence": "auto"}})
    assert config.calibrate.by == "group" and config.calibrate.confidence == "auto"
    with pytest.raises(ValueError, match=r"calibrate\.by"):  # any other column: by_column tests
        PipelineConfig.from_dict({**base, "calibrate": {"by": "probs"}})
    with pytest.raises(ValueError, match=r"calibrate\.confidence"):
        PipelineConfig.from_dict({**base, "calibrate": {"confidence": "automatic"}})
    # auto with fit disabled is fine: the candidates are then the two heuristics
    PipelineConfig.from_dict({**base, "fit": {"enabled": False},
                              "calibrate": {"confidence": "auto", "compare": ["conf_simulated"]}})


def test_a_cascade_per_group_without_fit_and_auto_on_the_training_split(tmp_path):
    data = write_scenario(tmp_path)
    judge = data.pop("annotate")
    data["annotate"] = {}
    data["cascade"] = [{**judge, "judge_name": "first"}, {**judge, "judge_name": "second"}]
    data["fit"] = {"enabled": False}
    data["calibrate"]["compare"] = ["conf_simulated", "conf_predictive"]
    result = run_pipeline(PipelineConfig.from_dict(data), stream=open("/dev/null", "w"))
    certificate = Certificate.read(result["certificate"])
    choice = certificate.extra["confidence_choice"]
    assert choice["candidates"] == ["conf_predictive", "conf_simulated"]
    assert choice["validation"] == "the training split"
    for entry in certificate.groups["values"].values():
        assert [s["name"] for s in entry["stages"]] == ["first", "second"]
        # each group's delta is split again across its two judges
        assert sum(s["delta"] for s in entry["stages"]) == pytest.approx(entry["delta"])
    scores = [read_table(RunFolder(data["run_dir"]).scores(n)) for n in ("first", "second")]
    decisions, summary = apply_certificate(certificate, __import__("pyarrow").concat_tables(scores))
    assert set(summary["by_reason"]) <= {"accepted_first_stage", "accepted_later_stage",
                                         "below_threshold", "abstained", "no_verdict"}
    assert "accepted_first_stage" in summary["by_reason"]
