"""Simulated annotators: subsets, grouping by real annotator ids, seeded groups, bad pools."""

from __future__ import annotations

import pyarrow as pa
import pytest

from marc_ray.annotate.annotators import build_annotators, read_pool, run_layout, shot_subsets
from marc_ray.contracts import ContractError, check_pool_disjoint, validate_comparisons

from annotate_toys import arithmetic_rows


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_every_nonempty_subset(k):
    subsets = shot_subsets(k)
    assert len(subsets) == 2 ** k - 1
    assert len(set(subsets)) == len(subsets)
    assert subsets[-1] == tuple(range(k))  # the full set last: the Jung et al. heuristic uses it


def test_subset_size_limit():
    assert len(shot_subsets(5, 2)) == 5 + 10
    assert max(len(s) for s in shot_subsets(5, 2)) == 2
    with pytest.raises(ValueError, match="max_size must be in"):
        shot_subsets(3, 4)


def test_layout_counts_runs():
    layout = run_layout(5, 5)
    assert layout.shape == (5, 31, 2)
    assert layout.n_runs == 5 * 31 * 2


def test_groups_by_real_annotator_ids():
    pool = read_pool(pa.Table.from_pylist(arithmetic_rows("p", 0, 12, annotators=3)))
    annotators = build_annotators(pool, 2, 4, seed=1)
    owner = {row["id"]: row["annotator"] for row in pool.to_pylist()}
    assert len(annotators) == 2
    for annotator in annotators:
        assert len(annotator.examples) == 4
        assert {owner[e["id"]] for e in annotator.examples} == {annotator.name}
    assert annotators[0].name != annotators[1].name
    assert build_annotators(pool, 2, 4, seed=1) == annotators  # seeded


def test_random_groups_are_disjoint_and_seeded():
    pool = read_pool(pa.Table.from_pylist(arithmetic_rows("p", 0, 12)))
    annotators = build_annotators(pool, 3, 3, seed=0)
    ids = [e["id"] for a in annotators for e in a.examples]
    assert len(ids) == len(set(ids)) == 9
    assert build_annotators(pool, 3, 3, seed=0) == annotators
    assert build_annotators(pool, 3, 3, seed=1) != annotators


def test_ties_are_not_examples():
    rows = arithmetic_rows("p", 0, 6)
    for row in rows[:4]:
        row["human_label"] = "tie"
    pool = read_pool(pa.Table.from_pylist(rows))
    with pytest.raises(ContractError, match="need 4 non-tie examples, the pool has 2"):
        build_annotators(pool, 2, 2)


def test_k_larger_than_an_annotators_examples():
    pool = read_pool(pa.Table.from_pylist(arithmetic_rows("p", 0, 12, annotators=3)), "pool.jsonl")
    with pytest.raises(ContractError, match=r"pool.jsonl.*k_shots=5 is larger than the examples"):
        build_annotators(pool, 2, 5, source="pool.jsonl")


def test_empty_and_unlabelled_pools():
    empty = pa.Table.from_pylist([], schema=pa.schema([("id", pa.string())]))
    with pytest.raises(ContractError, match="few-shot pool is empty"):
        read_pool(empty, "pool.jsonl")
    rows = arithmetic_rows("p", 0, 3)
    del rows[1]["human_label"]
    with pytest.raises(ContractError, match="row 1, field 'human_label': no human label"):
        read_pool(pa.Table.from_pylist(rows), "pool.jsonl")


def test_pool_overlap_is_refused():
    pool = read_pool(pa.Table.from_pylist(arithmetic_rows("x", 0, 4)))
    items = validate_comparisons(pa.Table.from_pylist(arithmetic_rows("x", 3, 4)))
    with pytest.raises(ContractError, match="id 'x3' is also in the few-shot pool"):
        check_pool_disjoint(pool, items, "pool.jsonl", "items.jsonl")
