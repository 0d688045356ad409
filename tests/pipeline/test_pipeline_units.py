"""Pipeline pieces that need no engine: the demo data, the split, stage manifests and resume."""

from __future__ import annotations

import io
import json
from collections import Counter

import pyarrow as pa
import pytest

from marc_ray.config import PipelineConfig
from marc_ray.contracts import (ContractError, check_pool_disjoint, majority_label, rows_to_table,
                                validate_comparisons)
from marc_ray.demo import DemoSpec, generate_demo, write_demo
from marc_ray.datasets.prepare import assign_splits
from marc_ray.pipeline import Progress, Stage, declare_stages, run_stage
from marc_ray.run_folder import RunFolder


def test_demo_is_deterministic_and_in_contract(tmp_path):
    first, pool = generate_demo(DemoSpec(n_items=300, seed=3))
    again, _ = generate_demo(DemoSpec(n_items=300, seed=3))
    other, _ = generate_demo(DemoSpec(n_items=300, seed=4))
    assert first == again and first != other
    table = validate_comparisons(rows_to_table(first), "demo", require_labels=True)
    pool_table = validate_comparisons(rows_to_table(pool), "pool", pool=True)
    check_pool_disjoint(pool_table, table, "pool", "demo")
    assert all(3 <= len(row["human_votes"]) <= 5 for row in first)
    assert Counter(row["annotator"] for row in pool) == {f"annotator-{j:02d}": 6 for j in range(5)}
    # realistic disagreement: clear items mostly agree with the verifiable answer, ambiguous split
    clear = [row for row in first if row["truth"] is not None]
    wrong = sum(majority_label([v["label"] for v in row["human_votes"]]) != row["truth"] for row in clear)
    assert 0.01 < wrong / len(clear) < 0.2
    ambiguous = len(first) - len(clear)
    assert 0.05 < ambiguous / len(first) < 0.25
    paths = write_demo(tmp_path, DemoSpec(n_items=5))
    assert [sum(1 for _ in open(p)) for p in paths] == [5, 30]
    with pytest.raises(ValueError, match=r"votes_per_item must be \(low, high\)"):
        generate_demo(DemoSpec(votes_per_item=(4, 2)))


def _config(**data) -> PipelineConfig:
    return PipelineConfig.from_dict({"data": {"demo": {}, **data},
                                     "annotate": {"n_annotators": 2, "k_shots": 1}})


def test_assign_splits_by_fraction_and_group():
    n = 200
    table = validate_comparisons(pa.table({
        "id": [f"i{k}" for k in range(n)], "instruction": ["q"] * n, "response_a": ["x"] * n,
        "response_b": ["y"] * n, "human_label": ["a"] * n, "group": [f"g{k // 4}" for k in range(n)]}))
    split = assign_splits(table, _config().data, "t").column("split").to_pylist()
    counts = Counter(split)
    assert counts == {"train": 80, "calibration": 80, "test": 40}  # 50 groups of 4: 20/20/10
    groups = {}
    for value, group in zip(split, table.column("group").to_pylist()):
        groups.setdefault(group, set()).add(value)
    assert all(len(v) == 1 for v in groups.values())  # a group never straddles two splits
    assert split == assign_splits(table, _config().data, "t").column("split").to_pylist()
    given = table.set_column(table.column_names.index("split"), "split", pa.array(["oops"] * n))
    with pytest.raises(ContractError, match=r"split 'oops' is not one of"):
        assign_splits(given, _config().data, "t")


def test_run_stage_resumes_only_what_changed(tmp_path):
    stream = io.StringIO()
    progress = Progress(stream)
    source, output = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("1")
    calls = []

    def compute():
        calls.append(1)
        output.write_text(source.read_text() + "!")
        return {"items": 1}

    def stage(settings):
        declared = Stage(1, "demo", settings, [str(source)], [str(output)], compute)
        return run_stage(progress, RunFolder(str(tmp_path)), declared)

    assert stage({"a": 1}) and not stage({"a": 1}) and len(calls) == 1
    assert stage({"a": 2}) and len(calls) == 2          # a setting changed
    source.write_text("2")
    assert stage({"a": 2}) and len(calls) == 3          # an input changed
    output.write_text("tampered")
    assert stage({"a": 2}) and len(calls) == 4          # an output changed
    manifest = json.loads((tmp_path / "manifests" / "demo.json").read_text())
    assert manifest["details"] == {"items": 1} and manifest["settings"] == {"a": 2}
    text = stream.getvalue()
    assert "skipped   outputs up to date" in text and text.count("done") == 4


def test_each_stage_key_holds_what_the_stage_reads(tmp_path):
    """A stage's resume key is its declaration: what prepare, score, calibrate and the report
    read is declared, so a change to it reruns them."""
    def declared(**sections):
        data = {"run_dir": str(tmp_path / "run"), "data": {"demo": {}},
                "annotate": {"n_annotators": 2, "k_shots": 1}, **sections}
        return {(stage.name, stage.label): stage
                for stage in declare_stages(PipelineConfig.from_dict(data))}

    base = declared()
    assert [name for name, _ in base] == ["prepare", "annotate", "fit", "score", "calibrate", "report"]
    # prepare accepts the fit stage's validation split names in a given split column
    other = declared(fit={"valid_splits": ["held-out"]})
    assert base["prepare", ""].settings["valid_splits"] == ["valid", "validation", "dev"]
    assert other["prepare", ""].settings["valid_splits"] == ["held-out"]
    folder = RunFolder(str(tmp_path / "run"))
    model = folder.model_files("SmolLM2-135M-Instruct")
    for name in ("score", "calibrate", "report"):  # the fitted model (weights and its config)
        stage = next(s for (n, _), s in base.items() if n == name)
        assert set(model) <= set(stage.inputs), name
    assert folder.config in base["report", ""].inputs  # the report shows the whole configuration
    heuristic = declared(fit={"enabled": False},
                         calibrate={"confidence": "conf_simulated", "compare": []})
    assert "fit" not in [name for name, _ in heuristic]
