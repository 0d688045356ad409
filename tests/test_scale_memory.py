"""Bounded memory at scale (issue 22): report and apply stream the run vectors and fit builds
its features batch by batch; each streamed path gives what the one-table path gave. The guard
on peak memory at 100k items is tests/test_scale_guard.py."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marc_ray.calibrate.reasons import count_unreadable
from marc_ray.calibrate.run_counts import COUNT_COLUMNS, file_run_counts, file_run_vectors
from marc_ray.contracts import ContractError
from marc_ray.fit import FitConfig
from marc_ray.fit.data import prepare
from marc_ray.fit.synthetic import all_subsets_layout, trap_annotations


@pytest.fixture(scope="module")
def annotations():
    table = trap_annotations(300, layout=all_subsets_layout(3, 3), seed=3, missing_rate=0.2,
                             splits={"train": 0.5, "calibration": 0.3, "test": 0.2})
    assert table.num_rows == 300
    return table


def test_streamed_run_counts_equal_the_whole_column(annotations, tmp_path):
    path = tmp_path / "scores.parquet"
    pq.write_table(annotations, path, row_group_size=40)
    bad, total = count_unreadable(annotations.column("probs"))
    assert bad.sum() > 0  # missing runs exist, so the counts are not trivially equal
    counts = file_run_counts(path, batch_rows=7)  # several batches per row group
    assert counts.column("id").to_pylist() == annotations.column("id").to_pylist()
    np.testing.assert_array_equal(counts.column(COUNT_COLUMNS[0]).to_numpy(), bad)
    np.testing.assert_array_equal(counts.column(COUNT_COLUMNS[1]).to_numpy(), total)
    ids = annotations.column("id").to_pylist()
    wanted = [ids[5], ids[250], "not-an-id"]
    vectors = file_run_vectors(path, wanted, batch_rows=7)
    assert sorted(vectors) == sorted(wanted[:2])
    vector, statuses = vectors[ids[250]]  # the run vector and its runs' statuses
    assert len(statuses) == len(vector)
    np.testing.assert_array_equal(np.array(vector, dtype=float),
                                  np.array(annotations.column("probs")[250].as_py(), dtype=float))
    without = annotations.drop_columns(["probs"])
    pq.write_table(without, tmp_path / "no_runs.parquet")
    assert file_run_counts(tmp_path / "no_runs.parquet") is None


def test_apply_reads_counts_not_vectors_and_decides_alike(annotations, tmp_path):
    """apply_file on a scored file (its probs streamed into counts, never read whole) decides
    every item, with the same reasons, as apply_certificate on the whole table did."""
    from marc_ray.apply import apply_certificate, apply_file, read_for_apply
    from marc_ray.calibrate.calibrator import SelectiveCalibrator
    from marc_ray.calibrate.grid import fixed_grid

    table = annotations
    n = table.num_rows
    no_verdict = np.zeros(n, bool)
    no_verdict[[3, 40, 41, 299]] = True  # every run unreadable: no verdict, escalated with counts
    probs = [[None] * len(row) if no_verdict[i] else row
             for i, row in enumerate(table.column("probs").to_pylist())]
    pred = [None if no_verdict[i] else p for i, p in enumerate(table.column("pred").to_pylist())]
    table = table.set_column(table.column_names.index("probs"), "probs",
                             pa.array(probs, table.schema.field("probs").type))
    table = table.set_column(table.column_names.index("pred"), "pred", pa.array(pred, pa.string()))
    cal = np.asarray(table.column("split").to_pylist()) == "calibration"
    agree = np.asarray(pred, dtype=object) == np.asarray(table.column("human_label").to_pylist())
    conf = np.clip(np.where(agree, 0.8, 0.55) + np.random.default_rng(0).normal(0, 0.05, n), 0, 1)
    conf[no_verdict] = np.nan
    table = table.append_column("conf_marc", pa.array(conf))
    calibrator = SelectiveCalibrator(alpha=0.2, delta=0.1, grid=fixed_grid(50, 0.5, 1.0)).calibrate(
        conf[cal], np.asarray(pred, dtype=object)[cal],
        np.asarray(table.column("human_label").to_pylist(), dtype=object)[cal], names=["synthetic"])
    certificate = calibrator.certificate("sha256:t", confidence_names=["conf_marc"])
    certificate.write(tmp_path / "certificate.json")
    path = tmp_path / "scored.parquet"
    pq.write_table(table, path, row_group_size=25)

    read = read_for_apply(str(path))
    assert "probs" not in read.column_names and set(COUNT_COLUMNS) <= set(read.column_names)
    apply_file(tmp_path / "certificate.json", path, tmp_path / "out")
    streamed = pq.read_table(tmp_path / "out" / "decisions.parquet")
    whole, _ = apply_certificate(certificate, pq.read_table(path), str(path))
    assert streamed.drop_columns(["confidence"]).equals(whole.drop_columns(["confidence"]))
    np.testing.assert_array_equal(streamed.column("confidence").to_numpy(),
                                  whole.column("confidence").to_numpy())  # NaN where no verdict
    reasons = streamed.column("reason").to_pylist()
    assert all(streamed.column("verdict")[i].as_py() == "escalate" for i in (3, 40, 41, 299))
    assert calibrator.coverage_ > 0 and "unreadable" in reasons[3] and reasons[3] != reasons[0]


def test_fit_refuses_a_training_id_repeated_across_batches(annotations, tmp_path):
    splits = annotations.column("split").to_pylist()
    train = [i for i, s in enumerate(splits) if s == "train"]
    first, last = train[0], train[-1]
    ids = annotations.column("id").to_pylist()
    ids[last] = ids[first]
    table = annotations.set_column(0, "id", pa.array(ids, pa.string()))
    path = tmp_path / "dup.parquet"
    pq.write_table(table, path, row_group_size=30)  # the two rows are in different batches
    with pytest.raises(ContractError, match=rf"row {last}, field 'id': duplicate \(id, judge\)"):
        prepare(path, FitConfig())


def _hold_out_reference(table, candidates, config):
    """fit.data._hold_out_groups before it was column-wise (one Python object per row)."""
    ids = table.column("id").to_pylist()
    groups = table.column("group").to_pylist()
    keys = np.array([str(g) if g is not None else f"id:{i}" for g, i in zip(groups, ids)], dtype=object)
    labels = np.asarray(table.column("human_label").to_pylist(), dtype=object)
    pred = np.asarray(table.column("pred").to_pylist(), dtype=object)
    counted = np.isin(labels, ["a", "b"]) | ((labels == "tie") & (config.tie_policy == "disagree"))
    disagrees = counted & (labels != pred) & candidates
    with_disagreement = set(keys[disagrees])
    rng = np.random.default_rng(config.random_state)
    chosen: set = set()
    for stratum in (with_disagreement, set(keys[candidates]) - with_disagreement):
        ordered = rng.permutation(np.array(sorted(stratum), dtype=object))
        n_valid = int(round(config.valid_fraction * len(ordered)))
        if len(ordered) >= 2:
            n_valid = min(max(1, n_valid), len(ordered) - 1)
        chosen.update(ordered[:n_valid])
    return candidates & np.array([k in chosen for k in keys])


@pytest.mark.parametrize("tie_policy", ["drop", "disagree"])
def test_column_wise_hold_out_picks_the_groups_the_row_wise_one_did(tie_policy):
    from marc_ray.fit.data import _hold_out_groups

    rng = np.random.default_rng(4)
    n = 500
    groups = [None if rng.random() < 0.3 else f"g{rng.integers(60)}" for _ in range(n)]
    table = pa.table({"id": [f"item-{i}" for i in range(n)], "group": pa.array(groups, pa.string()),
                      "human_label": rng.choice(["a", "b", "tie"], n).tolist(),
                      "pred": [None if rng.random() < 0.05 else p for p in rng.choice(["a", "b"], n)]})
    candidates = rng.random(n) < 0.7
    config = FitConfig(tie_policy=tie_policy, random_state=7)
    held = _hold_out_groups(table, candidates, config)
    np.testing.assert_array_equal(held, _hold_out_reference(table, candidates, config))
    assert 0 < held.sum() < candidates.sum()


def test_deciding_in_slices_equals_deciding_every_item_at_once(annotations, monkeypatch):
    """apply and the report's escalations decide DECIDE_ROWS items at a time: with slices of 7
    items (43 slices, the last partial) every decision, reason, count and example is the one a
    single slice gives."""
    import marc_ray.calibrate.decide as decide_module
    from marc_ray.apply import apply_certificate
    from marc_ray.calibrate.calibrator import SelectiveCalibrator
    from marc_ray.calibrate.evaluation import escalation_examples
    from marc_ray.calibrate.grid import fixed_grid
    from marc_ray.contracts import ItemSet

    table = annotations
    n = table.num_rows
    pred = np.asarray(table.column("pred").to_pylist(), dtype=object)
    labels = np.asarray(table.column("human_label").to_pylist(), dtype=object)
    conf = np.clip(np.where(pred == labels, 0.8, 0.55) + np.random.default_rng(1).normal(0, 0.08, n), 0, 1)
    conf[pred == None] = np.nan  # noqa: E711 (an item without a verdict)
    table = table.append_column("conf_marc", pa.array(conf))
    cal = np.asarray(table.column("split").to_pylist()) == "calibration"
    certificate = SelectiveCalibrator(alpha=0.2, delta=0.1, grid=fixed_grid(50, 0.5, 1.0)).calibrate(
        conf[cal], pred[cal], labels[cal], names=["synthetic"]).certificate(
        "sha256:t", confidence_names=["conf_marc"])
    items = ItemSet("test", conf, pred, labels, table.column("id").to_pylist())
    runs = table.select(["id", "probs"])

    def both():
        decisions, summary = apply_certificate(certificate, table)
        return decisions, summary, escalation_examples(certificate, items, runs, per_kind=4)

    whole = both()
    monkeypatch.setattr(decide_module, "DECIDE_ROWS", 7)
    sliced = both()
    assert sliced[0].drop_columns(["confidence"]).equals(whole[0].drop_columns(["confidence"]))
    np.testing.assert_array_equal(sliced[0].column("confidence").to_numpy(),
                                  whole[0].column("confidence").to_numpy())
    assert sliced[1] == whole[1] and sliced[2] == whole[2]
    assert len(whole[1]["by_reason"]) >= 2 and 0 < whole[1]["escalated"] < n


def test_parquet_batches_holds_one_row_group_not_the_file(tmp_path):
    """A reader asked for every row group at once keeps each group's pre-buffered (compressed)
    bytes until it is done: by the last batch it held the file. parquet_batches asks one row
    group at a time, so Arrow's allocations stay near one group's size. On the code before
    (6594c0a) this fails: 44.7 MB held against 1.5 MB a row group."""
    from marc_ray.contracts.io import parquet_batches

    rng = np.random.default_rng(0)
    rows, groups = 4_000, 20
    values = rng.random((rows * groups, 100)).astype(np.float32)  # incompressible: 1.6 MB a group
    table = pa.table({"probs": pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), 100)
                      .cast(pa.list_(pa.float32()))})
    path = tmp_path / "runs.parquet"
    pq.write_table(table, path, row_group_size=rows, compression="none")
    group_bytes = values[:rows].nbytes
    before = pa.total_allocated_bytes()
    held = 0
    seen = 0
    for batch in parquet_batches(path, 1_000):
        held = max(held, pa.total_allocated_bytes() - before)
        seen += batch.num_rows
    assert seen == rows * groups
    assert held < 4 * group_bytes, f"{held / 2**20:.1f} MB held; one row group is {group_bytes / 2**20:.1f} MB"
