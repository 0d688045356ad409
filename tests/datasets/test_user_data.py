"""Your own data without code: a column map and a label map over JSON lines (also named .json),
CSV and Parquet; a pool drawn from the train split when none is given, its items out of every
split; pool partitions named as such in the report."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from marc_ray.annotate.annotators import build_annotators, pool_partition_notes, read_pool
from marc_ray.config import PipelineConfig
from marc_ray.contracts import ContractError, read_table
from marc_ray.datasets.prepare import DataConfig, prepare
from marc_ray.datasets.user_data import read_user_table

N_ROWS = 2553  # the size of the public single-label set this shape comes from
COLUMNS = {"instruction": "query", "response_a": "response1", "response_b": "response2",
           "human_label": "human"}
LABELS = {"model1": "a", "model2": "b", "TIE": "tie"}


def _single_label_rows(n=N_ROWS, seed=0):
    rng = np.random.default_rng(seed)
    return [{"query": f"question {i}?", "response1": f"answer one {i}", "response2": f"answer two {i}",
             "human": str(rng.choice(["model1", "model2", "TIE"], p=[0.45, 0.4, 0.15])),
             "source": "synthetic"} for i in range(n)]


@pytest.fixture
def single_label_json(tmp_path):
    """JSON lines in a file named .json, as the public set ships."""
    path = tmp_path / "set.json"
    path.write_text("".join(json.dumps(row) + "\n" for row in _single_label_rows()))
    return str(path)


def _prepare(tmp_path, comparisons, pool_size=25, **data):
    config = DataConfig(comparisons=comparisons, columns=COLUMNS, labels=LABELS,
                        pool_size=pool_size, **data).validate()
    out = tmp_path / "run"
    counts = prepare(config, seed=0, comparisons_out=str(out / "comparisons.parquet"),
                     pool_out=str(out / "pool.parquet"))
    return counts, read_table(str(out / "comparisons.parquet")), read_table(str(out / "pool.parquet"))


def test_a_single_label_file_is_mapped_split_and_gives_its_own_pool(tmp_path, single_label_json):
    counts, comparisons, pool = _prepare(tmp_path, single_label_json)
    rows = _single_label_rows()
    assert counts["comparisons"] + counts["pool"] == N_ROWS and counts["pool"] == 25
    # ids are the row numbers; the labels mapped through data.labels
    expected = {str(i): LABELS[row["human"]] for i, row in enumerate(rows)}
    got = dict(zip(comparisons.column("id").to_pylist(), comparisons.column("human_label").to_pylist()))
    assert all(expected[i] == label for i, label in got.items())
    assert comparisons.column("instruction").to_pylist()[0] == "question 0?"
    # the pool: 25 non-tie train items, gone from every split
    pool_ids = set(pool.column("id").to_pylist())
    assert len(pool_ids) == 25 and not pool_ids & set(got)
    assert set(pool.column("human_label").to_pylist()) <= {"a", "b"}
    assert "annotator" not in pool.column_names
    # drawn from the train split only: with the pool put back, the split is the one drawn
    # without it (the split is drawn before the pool, by item)
    _, full, _ = _prepare(tmp_path / "again", single_label_json, pool_size=0)
    split_of = dict(zip(full.column("id").to_pylist(), full.column("split").to_pylist()))
    assert {split_of[i] for i in pool_ids} == {"train"}
    for split in ("calibration", "test"):
        assert counts[split] == list(split_of.values()).count(split)
    assert counts["train"] == list(split_of.values()).count("train") - 25
    # seeded: the same pool again; the annotators are 5 partitions of 5 of it
    assert set(_prepare(tmp_path / "third", single_label_json)[2].column("id").to_pylist()) == pool_ids
    annotators = build_annotators(read_pool(pool), 5, 5, seed=0)
    shots = [example["id"] for annotator in annotators for example in annotator.examples]
    assert sorted(shots) == sorted(pool_ids) and [a.name for a in annotators] == \
        [f"group-{j}" for j in range(5)]


def test_csv_and_parquet_give_the_same_comparisons(tmp_path, single_label_json):
    _, want, _ = _prepare(tmp_path / "json", single_label_json)
    table = pa.Table.from_pylist(_single_label_rows())
    pq.write_table(table, tmp_path / "set.parquet")
    pa_csv.write_csv(table, tmp_path / "set.csv")
    for path in (tmp_path / "set.parquet", tmp_path / "set.csv"):
        _, got, _ = _prepare(tmp_path / path.suffix[1:], str(path))
        assert got.select(["id", "instruction", "response_a", "response_b", "human_label", "split"]) \
            .equals(want.select(["id", "instruction", "response_a", "response_b", "human_label",
                                 "split"]))


def test_errors_name_the_file_the_row_and_the_files_column(tmp_path, single_label_json):
    rows = _single_label_rows(50)
    rows[37]["human"] = "model3"
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(ContractError, match=r"bad.jsonl, row 37, field 'human': label 'model3' is "
                                            r"not in data.labels \(data.labels maps 'model1', "
                                            r"'model2', 'TIE'\)"):
        read_user_table(str(path), COLUMNS, LABELS)
    with pytest.raises(ContractError, match=r"set.json, field 'prompt': missing column "
                                            r"\(data.columns.instruction names it; columns present: "
                                            r"query, response1"):
        read_user_table(single_label_json, {**COLUMNS, "instruction": "prompt"}, LABELS)
    rows = _single_label_rows(50)
    rows[12]["response2"] = None
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(ContractError, match=r"bad.jsonl, row 12, field 'response2': missing value "
                                            r"\(data.columns.response_b\)"):
        _prepare(tmp_path, str(path), pool_size=5)
    with pytest.raises(ValueError, match=r"data.columns: 'question' is not a comparison field"):
        DataConfig(comparisons=single_label_json, columns={"question": "query"}).validate()
    with pytest.raises(ValueError, match=r"data.labels.TIE must be one of \['a', 'b', 'tie'\], "
                                         r"got 'draw'"):
        DataConfig(comparisons=single_label_json, labels={"TIE": "draw"}).validate()


def test_a_pool_larger_than_the_train_split_allows_is_refused(tmp_path, single_label_json):
    with pytest.raises(ContractError, match=r"field 'data.pool': data.pool is not given, and the "
                                            r"train split has \d+ items labelled 'a' or 'b' to "
                                            r"draw a few-shot pool of 5000 from"):
        _prepare(tmp_path, single_label_json, pool_size=5000)


def test_the_pipeline_sizes_the_pool_to_its_judges_and_replay_needs_none(tmp_path, single_label_json):
    base = {"run_dir": str(tmp_path / "run"),
            "data": {"comparisons": single_label_json, "columns": COLUMNS, "labels": LABELS}}
    config = PipelineConfig.from_dict({**base, "annotate": {"n_annotators": 3, "k_shots": 2}})
    assert config.data.pool_size == 6
    runs = tmp_path / "runs.parquet"
    pq.write_table(pa.table({"id": ["0"], "order": ["ab"], "verdict": ["a"]}), runs)
    replay = PipelineConfig.from_dict({**base, "annotate": {"engine": "replay", "engine_options":
                                                            {"runs": str(runs)}},
                                       "calibrate": {"confidence": "conf_simulated",
                                                     "compare": ["conf_simulated"]},
                                       "fit": {"enabled": False}})
    assert replay.data.pool == "" and replay.data.pool_size == 0


def test_the_report_names_pool_partitions(tmp_path, single_label_json):
    _, _, pool = _prepare(tmp_path, single_label_json)
    path = str(tmp_path / "run" / "pool.parquet")
    notes = pool_partition_notes(path, [{"n_annotators": 5}])
    assert len(notes) == 1 and notes[0].startswith("5 pool partitions, not real annotators: ")
    assert pool_partition_notes(path, [{"engine": "replay"}]) == []
    pq.write_table(pool.append_column("annotator", pa.array(["h1"] * pool.num_rows)), path)
    assert pool_partition_notes(path, [{"n_annotators": 5}]) == []
