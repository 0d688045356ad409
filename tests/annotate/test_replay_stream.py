"""The streaming, vectorised replay equals the per-row reference on small data: missing runs
(null, raw answers, never run), shuffled rows, several shot subsets, zero-shot runs,
verdict tables through a panel, many batches and item ranges, and row numbers in errors."""

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marc_ray.annotate import replay, run_table
from marc_ray.annotate.replay import panel_runs, replay_annotations, write_replay
from marc_ray.datasets.verdicts import verdict_table
from marc_ray.contracts import ContractError, read_table, validate_comparisons
from replay_reference import replay_annotations as reference_replay


def _comparisons(n):
    rng = np.random.default_rng(1)
    rows = [{"id": f"item-{i}", "instruction": "q", "response_a": "r1", "response_b": "r2",
             "human_label": str(rng.choice(["a", "b", "tie"])), "split": "test", "group": f"g{i % 3}"}
            for i in range(n)]
    return validate_comparisons(pa.Table.from_pylist(rows))


def _probability_runs(n_items, seed=0):
    """3 annotators x subsets {0}, {1}, {0,1} x 2 orders + zero-shot, ~15% missing, shuffled."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_items):
        for name in ("ann-b", "ann-a", "ann-c", "zs"):
            for subset in (("0",) if name == "zs" else ("0", "1", "1,0")):
                for order in ("ab", "ba"):
                    u = rng.random()
                    if u < 0.05:
                        continue  # never run
                    p = None if u < 0.12 else float(rng.random())  # null: missing (NaN is refused)
                    if u > 0.97:
                        p = float(rng.choice([0.0, 1.0, 0.5]))
                    raw = str(rng.choice(["", "garbage", "no 'label'"])) if p is None or p != p else "A"
                    rows.append({"id": f"item-{i}", "annotator": name, "subset": subset,
                                 "order": order, "p_response_a": p, "raw": raw or None})
    order = rng.permutation(len(rows))
    return pa.Table.from_pylist([rows[k] for k in order])


def _assert_same(table, expected):
    assert table.schema == expected.schema
    assert table.schema.metadata == expected.schema.metadata
    for name in table.column_names:
        got, want = table.column(name).to_pylist(), expected.column(name).to_pylist()
        if name in ("probs", "label_mass", "zero_shot_probs"):
            np.testing.assert_array_equal(np.array(got, dtype=float), np.array(want, dtype=float))
        elif name.startswith(("p_", "conf_")):
            np.testing.assert_allclose(np.array(got, dtype=float), np.array(want, dtype=float),
                                       rtol=1e-12, atol=0)
        else:
            assert got == want, name


@pytest.fixture
def small_batches(monkeypatch):
    """Batches of 37 rows, output chunks of 5 items, item ranges of 7 items."""
    monkeypatch.setattr(run_table, "BATCH_ROWS", 37)
    monkeypatch.setattr(replay, "CHUNK_RUNS", 5 * 18)
    return 7 * (5 * 18 + 10)


def test_probability_runs_equal_the_reference(tmp_path, small_batches):
    comparisons = _comparisons(30)
    runs = _probability_runs(30)
    expected = reference_replay(runs, "judge", comparisons=comparisons, zero_shot="zs")
    assert expected.column("status").to_pylist()[0].count("ok") < 18  # missing runs do occur
    _assert_same(replay_annotations(runs, "judge", comparisons=comparisons, zero_shot="zs"), expected)
    path = str(tmp_path / "runs.parquet")
    pq.write_table(runs, path, row_group_size=50)
    out = str(tmp_path / "annotations.parquet")
    assert write_replay(path, "judge", out, comparisons=comparisons, zero_shot="zs",
                        max_dense_bytes=small_batches) == 30
    _assert_same(read_table(out), expected)
    # without comparisons: items in first appearance, annotators given in a chosen order
    expected = reference_replay(runs, "judge", annotators=["ann-c", "ann-a"])
    _assert_same(replay_annotations(runs, "judge", annotators=["ann-c", "ann-a"]), expected)


def test_verdict_panels_equal_the_reference(small_batches):
    rng = np.random.default_rng(3)
    rows = [{"id": f"item-{i}", "judge": judge, "variant": variant, "order": order,
             "verdict": rng.choice(["a", "b", "tie", None], p=[0.4, 0.4, 0.1, 0.1]),
             "raw": str(rng.choice(["x", "garbage"]))}
            for i in range(25) for judge in ("J1", "J2") for variant in ("p", "q")
            for order in ("ab", "ba") if rng.random() > 0.05]
    runs, zero_shot, members = panel_runs(verdict_table(rows), "J1")
    comparisons = _comparisons(25)
    expected = reference_replay(runs, "J1", comparisons=comparisons, zero_shot=zero_shot,
                                annotators=members)
    _assert_same(replay_annotations(runs, "J1", comparisons=comparisons, zero_shot=zero_shot,
                                    annotators=members), expected)


def test_errors_name_the_row_of_the_file(tmp_path, small_batches):
    runs = _probability_runs(10).to_pylist()
    path = str(tmp_path / "runs.parquet")
    for row, change, message in [
            (100, {"order": "up"}, r"runs.parquet, row 100, field 'order': order 'up' is not one of"),
            (80, {"p_response_a": 2.0}, r"row 80, field 'p_response_a': probability 2.0 outside"),
            (60, {"id": "nope"}, r"row 60, field 'id': id 'nope' is not in the comparisons"),
            (45, {"subset": "x"}, r"row 45, field 'subset': subset 'x' is not comma-separated"),
            (90, dict(runs[3]), r"row 90, field 'id': duplicate run for item")]:
        broken = list(runs)
        broken[row] = {**broken[row], **change}
        pq.write_table(pa.Table.from_pylist(broken, schema=pa.Table.from_pylist(runs).schema), path,
                       row_group_size=40)
        with pytest.raises(ContractError, match=message):
            write_replay(path, "judge", str(tmp_path / "out.parquet"), comparisons=_comparisons(10),
                         zero_shot="zs", max_dense_bytes=small_batches)
        assert not (tmp_path / "out.parquet").exists()  # nothing half-written
