"""Hub loaders: the offline error, and the row mappings on records shaped like the published ones."""

import sys

import pyarrow as pa
import pytest

from marc_ray.contracts import ContractError, validate_comparisons
from marc_ray.datasets import load_chatbot_arena, load_mt_bench_human
from marc_ray.datasets.hub import alpacafarm_rows, arena_rows, mt_bench_rows


def _conversation(question, answer, follow_up=None, answer2=None):
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    if follow_up:
        messages += [{"role": "user", "content": follow_up}, {"role": "assistant", "content": answer2}]
    return messages


def test_without_datasets_package_the_error_says_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails as if not installed
    with pytest.raises(ContractError, match=r"hub:lmsys/mt_bench_human_judgments: the `datasets` "
                                            r"package is not installed \(pip install datasets"):
        load_mt_bench_human()


def test_unreachable_hub_is_a_clear_error(monkeypatch):
    class Offline:
        @staticmethod
        def load_dataset(*args, **kwargs):
            raise ConnectionError("Couldn't reach 'lmsys/chatbot_arena_conversations' on the Hub")
    monkeypatch.setitem(sys.modules, "datasets", Offline)
    with pytest.raises(ContractError, match=r"cannot load from the Hugging Face hub: ConnectionError"
                                            r".*needs network access"):
        load_chatbot_arena()


def test_hub_loaders_refuse_a_local_path():
    with pytest.raises(ValueError, match="read from the Hugging Face hub.*datasets export"):
        load_mt_bench_human("/tmp/somewhere")


def test_mt_bench_votes_grouped_across_orders():
    a = _conversation("Q1", "answer of alpaca", "Q2", "alpaca 2")
    b = _conversation("Q1", "answer of vicuna", "Q2", "vicuna 2")
    records = [
        {"question_id": 81, "model_a": "alpaca", "model_b": "vicuna", "winner": "model_b",
         "judge": "expert_1", "conversation_a": a, "conversation_b": b, "turn": 1},
        # the same pair shown the other way round: model_a wins = vicuna wins = "b" after sorting
        {"question_id": 81, "model_a": "vicuna", "model_b": "alpaca", "winner": "model_a",
         "judge": "expert_2", "conversation_a": b, "conversation_b": a, "turn": 1},
        {"question_id": 81, "model_a": "alpaca", "model_b": "vicuna", "winner": "tie",
         "judge": "expert_1", "conversation_a": a, "conversation_b": b, "turn": 2},
    ]
    rows = mt_bench_rows(records)
    table = validate_comparisons(pa.Table.from_pylist(rows), require_labels=True).to_pylist()
    assert [r["id"] for r in table] == ["mt_bench-81-alpaca-vicuna-t1", "mt_bench-81-alpaca-vicuna-t2"]
    assert table[0]["human_label"] == "b" and table[0]["votes_b"] == 2
    assert table[0]["response_a"] == "answer of alpaca"
    assert table[1]["instruction"] == "User: Q1\n\nAssistant: answer of alpaca\n\nQ2"
    assert table[1]["response_b"] == "vicuna 2" and table[1]["human_label"] == "tie"
    bad = dict(records[0], winner="model_c")
    with pytest.raises(ContractError, match=r"row 0, field 'winner': winner 'model_c'"):
        mt_bench_rows([bad])


def test_alpacafarm_and_arena_rows():
    records = [{"instruction": "Name a fruit", "input": "", "output_1": "apple", "output_2": "car",
                "preference": p, "annotator_index": i} for i, p in enumerate([1, 1, 2, 1.5])]
    rows = alpacafarm_rows(records)
    assert len(rows) == 1 and [v["label"] for v in rows[0]["human_votes"]] == ["a", "a", "b", "tie"]
    with pytest.raises(ContractError, match=r"row 0, field 'preference'"):
        alpacafarm_rows([dict(records[0], preference=3)])
    arena = arena_rows([{"question_id": "q1", "winner": "tie (bothbad)", "judge": "u1",
                         "conversation_a": _conversation("hi", "hello"),
                         "conversation_b": _conversation("hi", "hey")}])
    assert arena[0]["human_votes"] == [{"annotator": "u1", "label": "tie"}]
    with pytest.raises(ContractError, match=r"row 0, field 'conversation_b': no assistant message"):
        arena_rows([{"question_id": "q1", "winner": "model_a", "conversation_a": _conversation("hi", "x"),
                     "conversation_b": [{"role": "user", "content": "hi"}]}])
