"""The pipeline with ``calibrate.by`` naming a column of the comparisons other than ``group``.

The demo data gets a ``language`` column (sums "en", capitals "fr", facts "de") and a ``group``
column that disagrees with it; a replay judge (no engine, no Ray, no fit) is right and confident
on sums and capitals, often wrong on facts. The run must certify a threshold per language,
carry the column through annotations and scores into the report, and ``apply`` must route by
it; bad input (the column absent, a calibration row without a value) fails at prepare, naming
the file, row and field.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from marc_ray.apply import apply_certificate, apply_file, apply_run
from marc_ray.config import PipelineConfig
from marc_ray.contracts import Certificate, ContractError, read_table
from marc_ray.pipeline import run_pipeline
from marc_ray.run_folder import RunFolder

from grouped_scenario import run_scenario, write_scenario as grouped_scenario

LANGUAGE = {"sum": "en", "capital": "fr", "fact": "de"}


def write_scenario(folder: Path, edit=None) -> dict:
    """The grouped scenario by language, a heuristic confidence, no fit (fast)."""
    data = grouped_scenario(folder, column="language", values=LANGUAGE,
                            split_shares=(0.2, 0.6, 0.2), edit=edit)
    data["fit"] = {"enabled": False}
    data["calibrate"].update(confidence="conf_simulated", compare=["conf_simulated"])
    return data


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("by_language")
    return run_scenario(folder, write_scenario(folder))


def test_a_threshold_per_language(run):
    _, config, result = run
    certificate = Certificate.read(result["certificate"])
    record = certificate.groups
    assert record["column"] == "language" and set(record["values"]) == {"en", "fr", "de"}
    assert sum(v["delta"] for v in record["values"].values()) == pytest.approx(0.2)
    thresholds = {g: float(v["stages"][0]["threshold"]) for g, v in record["values"].items()}
    assert np.isfinite(thresholds["en"]) and np.isfinite(thresholds["fr"])
    assert not thresholds["de"] < thresholds["en"]  # the hard language is held to more
    folder = RunFolder(config.run_dir)
    for path in (folder.annotations("replayed"), folder.scores("replayed")):
        table = read_table(path)
        assert "language" in table.column_names
        assert set(table.column("language").to_pylist()) == {"en", "fr", "de"}
    report = json.loads(Path(folder.report_dir, "report.json").read_text())
    assert report["groups"]["column"] == "language"
    assert set(report["groups"]["groups"]) == {"en", "fr", "de"}
    assert "| language |" in Path(folder.report_dir, "report.md").read_text()


def test_apply_routes_by_language_and_escalates_an_unseen_one(run, tmp_path):
    _, config, result = run
    certificate = Certificate.read(result["certificate"])
    scores = read_table(RunFolder(config.run_dir).scores("replayed"))
    languages = scores.column("language").to_pylist()
    renamed = ["la" if i % 5 == 0 else g for i, g in enumerate(languages)]
    table = scores.set_column(scores.column_names.index("language"), "language", pa.array(renamed))
    decisions, summary = apply_certificate(certificate, table)
    unseen = np.asarray(decisions.column("language").to_pylist()) == "la"
    assert unseen.sum() == len(languages[::5])
    assert set(np.asarray(decisions.column("reason").to_pylist())[unseen]) == {
        "group 'la' was not in the calibration set"}
    assert summary["by_group"]["la"] == {"n": int(unseen.sum()), "decided": 0,
                                         "escalated": int(unseen.sum()), "unseen": True}
    confidence = dict(zip(scores.column("id").to_pylist(),
                          scores.column("conf_simulated").to_pylist()))
    values = certificate.groups["values"]
    seen = pc.invert(pc.equal(decisions.column("language"), "la"))
    for row in decisions.filter(seen).to_pylist():
        threshold = float(values[row["language"]]["stages"][0]["threshold"])
        assert (row["stage"] == 0) == (confidence[row["id"]] >= threshold)
    # the same from files: the run's score/ folder, decisions.parquet keeps the column
    out = apply_file(result["certificate"], RunFolder(config.run_dir).scores("replayed"),
                     tmp_path / "applied")
    assert "language" in read_table(tmp_path / "applied" / "decisions.parquet").column_names
    assert set(out["by_group"]) == {"en", "fr", "de"}


def _drop_language(rows):
    for row in rows:
        row.pop("language")


def _null_on_a_calibration_row(rows):
    row = next(i for i, r in enumerate(rows) if r["split"] == "calibration" and i > 3)
    rows[row]["language"] = None
    _null_on_a_calibration_row.row = row


def test_a_missing_column_fails_at_prepare_listing_the_columns(tmp_path):
    config = PipelineConfig.from_dict(write_scenario(tmp_path, _drop_language))
    with pytest.raises(ContractError, match=r"comparisons\.jsonl, field 'language': missing "
                                            r"column \(a carried column \(calibrate\.by.*columns "
                                            r"present: id, "):
        run_pipeline(config, stream=open("/dev/null", "w"))
    assert not Path(RunFolder(config.run_dir).annotations("replayed")).exists()


def test_a_calibration_row_without_a_value_fails_at_prepare(tmp_path):
    config = PipelineConfig.from_dict(write_scenario(tmp_path, _null_on_a_calibration_row))
    row = _null_on_a_calibration_row.row
    with pytest.raises(ContractError, match=rf"comparisons\.jsonl, row {row}, field 'language': "
                                            r"missing value on a calibration row"):
        run_pipeline(config, stream=open("/dev/null", "w"))


def test_a_test_row_without_a_value_is_escalated(tmp_path):
    def null_on_test_rows(rows):
        for row in rows:
            if row["split"] == "test":
                row["language"] = None

    config = PipelineConfig.from_dict(write_scenario(tmp_path, null_on_test_rows))
    result = run_pipeline(config, stream=open("/dev/null", "w"))
    certificate = Certificate.read(result["certificate"])
    scores = read_table(RunFolder(config.run_dir).scores("replayed"))
    test = scores.filter(pc.equal(scores.column("split"), "test"))
    decisions, _ = apply_certificate(certificate, test)
    assert set(decisions.column("verdict").to_pylist()) == {"escalate"}
    assert set(decisions.column("reason").to_pylist()) == {
        "the item has no group value, and every certified threshold is for a group"}


@pytest.mark.parametrize("by, match", [
    ("pred", r"calibrate\.by.*annotation rows already hold"),
    ("conf_marc", r"calibrate\.by.*confidence column"),
    ("", r"calibrate\.by"),
    (3, r"calibrate\.by"),
])
def test_config_refuses_names_that_cannot_be_carried(by, match):
    with pytest.raises(ValueError, match=match):
        PipelineConfig.from_dict({"data": {"demo": {"n_items": 40}}, "calibrate": {"by": by}})


def test_config_accepts_any_other_column_and_carries_it():
    config = PipelineConfig.from_dict({"data": {"demo": {"n_items": 40}},
                                       "calibrate": {"by": "language"}})
    assert config.calibrate.by == "language"
    assert all(judge.carry == ("language",) for judge in config.judges())
    grouped = PipelineConfig.from_dict({"data": {"demo": {"n_items": 40}},
                                        "calibrate": {"by": "group"}})
    assert all(judge.carry == () for judge in grouped.judges())  # a contract column: nothing extra


def test_apply_run_refuses_new_items_without_the_column_before_any_engine(run, tmp_path):
    _, config, _ = run
    items = read_table(RunFolder(config.run_dir).comparisons).slice(0, 3)
    without = tmp_path / "without.parquet"
    pq.write_table(items.drop_columns(["language"]), without)
    with pytest.raises(ContractError, match=r"without\.parquet, field 'language': missing column"):
        apply_run(config.run_dir, without, tmp_path / "out1")
    with_column = tmp_path / "with.parquet"
    pq.write_table(items, with_column)
    with pytest.raises(ContractError, match="replays recorded outputs"):  # past the column check
        apply_run(config.run_dir, with_column, tmp_path / "out2")
