"""LLMFAO loader: the real files (crowd votes, ties, prompt groups) and malformed copies."""

import shutil
from collections import Counter

import pytest

from marc_ray.contracts import ContractError
from marc_ray.datasets import load_llmfao, load_llmfao_verdicts


@pytest.fixture(scope="module")
def llmfao(shared_data):
    return load_llmfao(shared_data / "llmfao")


def test_counts_votes_and_ties(llmfao):
    assert llmfao.num_rows == 2139
    votes = llmfao.column("human_votes").to_pylist()
    assert sum(len(v) for v in votes) == 8931
    assert len({v["annotator"] for row in votes for v in row}) == 124
    assert Counter(v["label"] for row in votes for v in row) == {"tie": 3471, "a": 2911, "b": 2549}
    assert Counter(len(v) for v in votes) == {5: 998, 4: 658, 3: 358, 2: 110, 1: 15}
    labels = Counter(llmfao.column("human_label").to_pylist())
    assert labels == {"tie": 877, "a": 677, "b": 585}  # tied majorities are frequent
    assert len(set(llmfao.column("group").to_pylist())) == 13  # 13 prompts: group-aware splits


def test_verdicts(shared_data):
    verdicts = load_llmfao_verdicts(shared_data / "llmfao").to_pylist()
    gpt4 = Counter(r["verdict"] for r in verdicts if r["judge"] == "gpt-4")
    assert gpt4 == {"b": 1130, "a": 943, "tie": 66}
    assert {r["order"] for r in verdicts} == {"ab"}


def _copy(shared_data, tmp_path):
    target = tmp_path / "llmfao"
    shutil.copytree(shared_data / "llmfao", target)
    for path in target.iterdir():
        path.chmod(0o644)
    return target


def test_malformed_vote(shared_data, tmp_path):
    root = _copy(shared_data, tmp_path)
    path = root / "crowd-comparisons.csv"
    lines = path.read_text().splitlines()
    lines[4] = lines[4].replace(",right,", ",both,")  # data row 3
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ContractError, match=r"crowd-comparisons.csv, row 3, field 'winner': "
                                            r"unknown label 'both'"):
        load_llmfao(root)


def test_malformed_columns_and_orphans(shared_data, tmp_path):
    root = _copy(shared_data, tmp_path)
    path = root / "crowd-comparisons.csv"
    original = path.read_text()
    path.write_text(original.replace("worker", "annotator", 1))
    with pytest.raises(ContractError, match=r"field 'worker': missing column"):
        load_llmfao(root)
    lines = original.splitlines()
    path.write_text("\n".join(lines + ["99999,8,97,98,58,tie,A,B"]) + "\n")
    with pytest.raises(ContractError, match=r"row 8931, field 'id': vote for pair '99999'"):
        load_llmfao(root)
    path.write_text("\n".join(lines[:1] + [l for l in lines[1:] if not l.startswith("0,")]) + "\n")
    with pytest.raises(ContractError, match=r"pairs-crowd.jsonl, row 0, field 'id': pair '0' has no crowd vote"):
        load_llmfao(root)


def test_malformed_pairs_line(shared_data, tmp_path):
    root = _copy(shared_data, tmp_path)
    path = root / "pairs-crowd.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:40]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ContractError, match=r"pairs-crowd.jsonl, row 2: malformed JSON line"):
        load_llmfao(root)
