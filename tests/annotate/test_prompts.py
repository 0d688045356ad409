"""Prompt templates and run rows: counts, orders, zero-shot runs, prefix sharing."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from marc_ray.annotate.annotators import build_annotators, read_pool, run_layout
from marc_ray.annotate.prompts import PromptBuilder, PromptTemplate, get_template

from annotate_toys import arithmetic_rows

ITEMS = [{"id": "q1", "instruction": "Name a colour.", "response_a": "Blue.", "response_b": "Seven."},
         {"id": "q2", "instruction": "Capital of France?", "response_a": "Rome", "response_b": "Paris"}]


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from marc_ray.annotate.models import load_tokenizer

    return load_tokenizer(tiny_model)


def builder(n, k, mode="choice", tokenizer=None, max_subset_size=0, zero_shot=True):
    pool = read_pool(pa.Table.from_pylist(arithmetic_rows("p", 0, 4 * n * k)))
    annotators = build_annotators(pool, n, k, seed=0)
    return PromptBuilder(get_template("default"), annotators, run_layout(n, k, max_subset_size),
                         mode, ("A", "B"), tokenizer, zero_shot)


@pytest.mark.parametrize("n,k", [(1, 1), (2, 3), (3, 3), (5, 5)])
def test_run_counts(n, k):
    b = builder(n, k)
    runs = b.runs(ITEMS)
    per_item = n * (2 ** k - 1) * 2 + 2  # both orders, plus the two zero-shot runs
    assert b.runs_per_item == per_item
    assert len(runs) == per_item * len(ITEMS)
    indices = sorted(r["run"] for r in runs if r["id"] == "q1")
    assert indices == [-2, -1] + list(range(n * (2 ** k - 1) * 2))


def test_subset_limit_and_no_zero_shot():
    b = builder(2, 3, max_subset_size=1, zero_shot=False)
    assert b.runs_per_item == 2 * 3 * 2
    assert all(r["run"] >= 0 for r in b.runs(ITEMS))


def test_orders_swap_the_responses():
    rows = {(r["id"], r["run"]): r for r in builder(1, 1).runs(ITEMS)}
    ab, ba = rows[("q2", 0)]["suffix"], rows[("q2", 1)]["suffix"]
    assert ab.index("Response A: Rome") < ab.index("Response B: Paris")
    assert "Response A: Paris" in ba and "Response B: Rome" in ba
    assert rows[("q2", 0)]["label_first"] == "A" and rows[("q2", 0)]["label_second"] == "B"


def test_prefix_shared_per_annotator_subset(tokenizer):
    b = builder(2, 2, tokenizer=tokenizer)
    runs = b.runs(ITEMS)
    layout = b.layout
    prefixes = {}
    for r in runs:
        group = ("zero",) if r["run"] < 0 else divmod(r["run"] // 2, layout.n_subsets)
        prefixes.setdefault(group, set()).add(r["prefix"])
    assert all(len(texts) == 1 for texts in prefixes.values())  # one prefix per group, any item
    assert len({next(iter(t)) for t in prefixes.values()}) == 1 + 2 * 3  # all groups differ
    zero = next(iter(prefixes[("zero",)]))
    assert "### Example" not in zero and zero.startswith("<|im_start|>system")
    full = next(iter(prefixes[(0, 2)]))
    assert full.count("### Example") == 2
    # rows of one group are contiguous: the engine keeps one prefix hot at a time
    order = [r["prefix"] for r in runs]
    changes = sum(a != b for a, b in zip(order, order[1:]))
    assert changes == len(prefixes) - 1


def test_choice_prompt_ends_at_the_answer_position(tokenizer):
    for tok in (tokenizer, None):
        row = builder(1, 2, tokenizer=tok).runs(ITEMS)[0]
        assert row["suffix"].endswith("Better response: [[")
        assert row["continuation_first"] == row["continuation_second"] == ""
    chat = builder(1, 2, tokenizer=tokenizer).runs(ITEMS)[0]
    assert chat["suffix"].endswith("<|im_start|>assistant\nBetter response: [[")


def test_likelihood_rows_give_continuations(tokenizer):
    rows = {(r["id"], r["run"]): r for r in builder(1, 1, "likelihood", tokenizer).runs(ITEMS)}
    ab, ba = rows[("q2", 0)], rows[("q2", 1)]
    assert (ab["continuation_first"], ab["continuation_second"]) == ("Rome", "Paris")
    assert (ba["continuation_first"], ba["continuation_second"]) == ("Paris", "Rome")
    assert ab["suffix"].startswith("Capital of France?")
    assert ab["suffix"].endswith("<|im_start|>assistant\n")
    # the example shows its preferred response as the assistant's answer
    example = builder(1, 1, "likelihood", tokenizer).annotators[0].examples[0]
    preferred = example["response_a"] if example["human_label"] == "a" else example["response_b"]
    assert f"<|im_start|>assistant\n{preferred}<|im_end|>" in ab["prefix"]
    plain = builder(1, 1, "likelihood").runs(ITEMS)[0]
    assert plain["suffix"].endswith("\nAnswer:") and plain["continuation_first"] == " Blue."


def test_template_from_file(tmp_path):
    path = tmp_path / "short.json"
    path.write_text(json.dumps({"answer_cue": "Verdict: [["}))
    template = get_template(str(path))
    assert template.answer_cue == "Verdict: [[" and template.name == "short.json"
    with pytest.raises(ValueError, match="unknown template 'nope'"):
        get_template("nope")
    with pytest.raises(ValueError, match=r"unknown template field\(s\) \['cue'\]"):
        PromptTemplate.from_dict({"cue": "x"})
