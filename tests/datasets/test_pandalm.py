"""PandaLM loader: the real files (counts, labels, ties) and malformed copies."""

import json
import shutil

import numpy as np
import pytest

from marc_ray.contracts import ContractError
from marc_ray.datasets import load_pandalm, load_pandalm_verdicts


@pytest.fixture(scope="module")
def pandalm(shared_data):
    return load_pandalm(shared_data / "pandalm")


def test_counts_votes_and_ties(pandalm):
    assert pandalm.num_rows == 999
    labels = np.array(pandalm.column("human_label").to_pylist())
    # majority of 3 annotators (0 = tie): 422 a, 472 b, 105 tie
    assert {k: int((labels == k).sum()) for k in ("a", "b", "tie")} == {"a": 422, "b": 472, "tie": 105}
    votes = pandalm.column("human_votes").to_pylist()
    assert all(len(v) == 3 for v in votes)
    assert {v["annotator"] for row in votes for v in row} == {"annotator1", "annotator2", "annotator3"}
    unanimous = sum(len({v["label"] for v in row}) == 1 for row in votes)
    assert unanimous == 879  # SOURCE.md: 879 unanimous, 120 split
    assert pandalm.column("votes_tie").to_numpy().sum() == sum(
        v["label"] == "tie" for row in votes for v in row)


def test_text_fields(pandalm):
    first = pandalm.slice(0, 1).to_pylist()[0]
    assert first["id"] == "pandalm-0"
    assert first["instruction"].startswith("The sentence you are given might be too wordy")
    assert "\n\nIf you have any questions about my rate" in first["instruction"]  # input appended
    assert first["response_b"] == "If you have any questions, please let me know."
    # six responses are the JSON boolean true in the source file: kept as the text "True"
    row = pandalm.filter(np.array(pandalm.column("id").to_pylist()) == "pandalm-157").to_pylist()[0]
    assert row["response_a"] == "True"
    assert len(set(pandalm.column("group").to_pylist())) < 999  # instructions are shared


def test_verdicts(shared_data):
    verdicts = load_pandalm_verdicts(shared_data / "pandalm")
    assert verdicts.num_rows == 2 * 999
    assert set(verdicts.column("order").to_pylist()) == {"ab"}
    rows = verdicts.to_pylist()
    gpt = [r["verdict"] for r in rows if r["judge"] == "gpt-3.5-turbo"]
    assert sum(v is None for v in gpt) == 25      # "garbage" answers are unusable, not ties
    assert sum(v == "tie" for v in gpt) == 38
    panda = [r["verdict"] for r in rows if r["judge"] == "pandalm-7b"]
    assert (panda.count("a"), panda.count("b"), panda.count("tie")) == (433, 459, 107)


def _copy(shared_data, tmp_path, edit):
    target = tmp_path / "pandalm"
    shutil.copytree(shared_data / "pandalm", target)
    path = target / "data" / "testset-v1.json"
    path.chmod(0o644)
    records = json.loads(path.read_text())[:5]
    edit(records)
    path.write_text(json.dumps(records))
    return target


def test_malformed_annotator_code(shared_data, tmp_path):
    def edit(records):
        records[3]["annotator2"] = 7
    folder = _copy(shared_data, tmp_path, edit)
    with pytest.raises(ContractError, match=r"testset-v1.json, row 3, field 'annotator2': unknown label 7"):
        load_pandalm(folder)


def test_malformed_missing_key_and_type(shared_data, tmp_path):
    folder = _copy(shared_data, tmp_path, lambda r: r[1].pop("response2"))
    with pytest.raises(ContractError, match=r"row 1, field 'response2': missing key"):
        load_pandalm(folder)
    folder = _copy(shared_data, tmp_path / "x", lambda r: r[2].update(response1=["list"]))
    with pytest.raises(ContractError, match=r"row 2, field 'response1': expected text"):
        load_pandalm(folder)


def test_malformed_duplicate_and_json(shared_data, tmp_path):
    folder = _copy(shared_data, tmp_path, lambda r: r[4].update(idx=r[0]["idx"]))
    with pytest.raises(ContractError, match=r"row 4, field 'id': duplicate id 'pandalm-0'"):
        load_pandalm(folder)
    (folder / "data" / "testset-v1.json").write_text('[{"idx": 0,')
    with pytest.raises(ContractError, match="malformed JSON"):
        load_pandalm(folder)


def test_missing_folder(tmp_path):
    with pytest.raises(ContractError, match="no such file .PandaLM test set."):
        load_pandalm(tmp_path)


def test_malformed_verdict(shared_data, tmp_path):
    target = tmp_path / "pandalm"
    shutil.copytree(shared_data / "pandalm", target)
    path = target / "data" / "gpt-3.5-turbo-testset-v1.json"
    path.chmod(0o644)
    records = json.loads(path.read_text())[:3]
    records[2]["gpt_result"] = "maybe"
    path.write_text(json.dumps(records))
    with pytest.raises(ContractError, match=r"row 2, field 'gpt_result': unknown label 'maybe'"):
        load_pandalm_verdicts(target)
