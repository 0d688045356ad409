"""The dataset registry: names, errors listing the allowed names, uniform loaders."""

import pytest

from marc_ray.contracts import ContractError
from marc_ray.datasets import DATASETS, get_dataset, load_dataset, load_verdicts


def test_registry_names_and_errors():
    assert {"pandalm", "llmbar", "llmfao", "mt_bench_human", "alpacafarm_human",
            "chatbot_arena"} == set(DATASETS)
    with pytest.raises(ValueError, match=r"unknown dataset 'pandaLM'; choose one of \['alpacafarm_human'"):
        get_dataset("pandaLM")
    with pytest.raises(ValueError, match=r"ships no judge verdicts; these do: \['llmbar', 'llmfao', 'pandalm'\]"):
        load_verdicts("chatbot_arena")


def test_every_loader_documents_source_license_and_label_policy():
    for dataset in DATASETS.values():
        module = __import__(dataset.load.__module__, fromlist=["_"])
        text = module.__doc__
        for word in ("Source", "License", "label"):
            assert word.lower() in text.lower(), (dataset.name, word)


def test_default_path_from_environment(shared_data, monkeypatch, tmp_path):
    monkeypatch.setenv("MARC_RAY_SHARED_DATA", str(shared_data))
    assert load_dataset("llmbar", subsets=["Natural"]).num_rows == 100
    monkeypatch.setenv("MARC_RAY_SHARED_DATA", str(tmp_path))
    with pytest.raises(ContractError, match="no such file.*MARC_RAY_SHARED_DATA"):
        load_dataset("pandalm")
