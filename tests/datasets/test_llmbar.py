"""LLMBar loader: the real files (subsets, gold labels, judge verdicts) and malformed copies."""

import json
import shutil
from collections import Counter

import pytest

from marc_ray.contracts import ContractError
from marc_ray.datasets import load_llmbar, load_llmbar_verdicts


@pytest.fixture(scope="module")
def llmbar(shared_data):
    return load_llmbar(shared_data / "llmbar")


def test_counts_and_labels(llmbar):
    assert llmbar.num_rows == 885
    labels = Counter(llmbar.column("human_label").to_pylist())
    assert labels == {"a": 440, "b": 445}  # gold labels, no ties
    groups = Counter(llmbar.column("group").to_pylist())
    assert groups["LLMBar/Natural"] == 100 and groups["LLMBar/Adversarial/Neighbor"] == 134
    assert groups["Processed/FairEval"] == 66
    assert llmbar.column("human_votes").null_count == 885  # one gold label, no votes
    assert llmbar.column("id").to_pylist()[0] == "llmbar/LLMBar/Natural/0"


def test_subset_selection(shared_data):
    natural = load_llmbar(shared_data / "llmbar", subsets=["Natural"])
    adversarial = load_llmbar(shared_data / "llmbar", subsets=["Adversarial"])
    assert (natural.num_rows, adversarial.num_rows) == (100, 319)
    assert Counter(natural.column("human_label").to_pylist()) == {"a": 42, "b": 58}
    with pytest.raises(ValueError, match="unknown LLMBar subset 'Nature'.*Natural"):
        load_llmbar(shared_data / "llmbar", subsets=["Nature"])


def test_verdicts(shared_data):
    verdicts = load_llmbar_verdicts(shared_data / "llmbar")
    rows = verdicts.to_pylist()
    assert set(r["judge"] for r in rows) == {"ChatGPT", "ChatGPT-0301", "GPT-4", "LLaMA2", "Falcon", "PaLM2"}
    assert set(r["variant"] for r in rows) == {"Vanilla", "Vanilla_NoRules"}
    # 4 judges x 885 x NoRules, 4 x 419 x Vanilla, 2 more judges on the 419 LLMBar items x 2 prompts
    assert verdicts.num_rows == 2 * (4 * 885 + 4 * 419 + 2 * 2 * 419)
    gpt4 = [r for r in rows if r["judge"] == "GPT-4" and r["variant"] == "Vanilla_NoRules"]
    by_item = {}
    for r in gpt4:
        by_item.setdefault(r["id"], {})[r["order"]] = r["verdict"]
    consistent = sum(v.get("ab") == v.get("ba") and v.get("ab") is not None for v in by_item.values())
    assert 700 < consistent < 885  # GPT-4 is mostly order-consistent
    assert sum(r["verdict"] is None for r in rows) > 0  # unparseable winners kept as unusable


def _copy(shared_data, tmp_path, subset="LLMBar/Natural"):
    target = tmp_path / "llmbar"
    shutil.copytree(shared_data / "llmbar" / "Dataset" / subset, target / "Dataset" / subset)
    for path in (target / "Dataset").rglob("*.json"):
        path.chmod(0o644)
    return target, target / "Dataset" / subset


def test_malformed_label(shared_data, tmp_path):
    root, folder = _copy(shared_data, tmp_path)
    records = json.loads((folder / "dataset.json").read_text())
    records[7]["label"] = 3
    (folder / "dataset.json").write_text(json.dumps(records))
    with pytest.raises(ContractError, match=r"Natural/dataset.json, row 7, field 'label': unknown label 3"):
        load_llmbar(root, subsets=["Natural"])


def test_malformed_missing_file_and_field(shared_data, tmp_path):
    root, folder = _copy(shared_data, tmp_path)
    with pytest.raises(ContractError, match=r"Adversarial/Neighbor/dataset.json: no such file"):
        load_llmbar(root)
    records = json.loads((folder / "dataset.json").read_text())
    del records[0]["output_2"]
    (folder / "dataset.json").write_text(json.dumps(records))
    with pytest.raises(ContractError, match=r"row 0, field 'output_2': missing key"):
        load_llmbar(root, subsets=["Natural"])


def test_malformed_result_file(shared_data, tmp_path):
    root, folder = _copy(shared_data, tmp_path)
    path = folder / "evaluators" / "GPT-4" / "Vanilla" / "result.json"
    records = json.loads(path.read_text())
    records[5]["results"][0]["swap = True"]["winner"] = "3"
    path.write_text(json.dumps(records))
    with pytest.raises(ContractError, match=r"GPT-4/Vanilla/result.json, row 5, field "
                                            r"'results\[swap = True\].winner': unknown label '3'"):
        load_llmbar_verdicts(root, subsets=["Natural"])
    records[5]["results"] = "[{'swap = False': "  # a truncated python-repr string
    path.write_text(json.dumps(records))
    with pytest.raises(ContractError, match=r"row 5, field 'results': unparseable results string"):
        load_llmbar_verdicts(root, subsets=["Natural"])
    path.write_text(json.dumps(records[:50]))
    with pytest.raises(ContractError, match=r"50 records for the 100 items"):
        load_llmbar_verdicts(root, subsets=["Natural"])


def test_results_as_python_repr_string(shared_data, tmp_path):
    root, folder = _copy(shared_data, tmp_path)
    path = folder / "evaluators" / "GPT-4" / "Vanilla" / "result.json"
    records = json.loads(path.read_text())
    records[0]["results"] = repr(records[0]["results"])  # the form SOURCE.md describes
    path.write_text(json.dumps(records))
    verdicts = load_llmbar_verdicts(root, subsets=["Natural"]).to_pylist()
    first = [r for r in verdicts if r["judge"] == "GPT-4" and r["variant"] == "Vanilla"
             and r["id"] == "llmbar/LLMBar/Natural/0"]
    assert {r["order"]: r["verdict"] for r in first} == {"ab": "a", "ba": "a"}
