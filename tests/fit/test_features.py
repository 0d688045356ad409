import numpy as np
import pyarrow as pa
import pytest

from marc_ray.annotate.assemble import annotation_row, annotation_table
from marc_ray.annotate.engine import RunResult
from marc_ray.contracts import ContractError
from marc_ray.fit.features import FeatureLayout, build_features
from marc_ray.fit.synthetic import all_subsets_layout


def _row(layout, item, p_first_by_run, pred_label="a"):
    results = {run: (RunResult(p) if p is not None else RunResult.missing("test"))
               for run, p in p_first_by_run.items()}
    results[-1], results[-2] = RunResult(0.6), RunResult(0.4)
    return annotation_row(item, "j", layout, results, {"human_label": pred_label, "split": "train"})


def test_order_mask_and_orientation(small_layout):
    layout = small_layout
    runs = {r: 0.8 if r % 2 == 0 else 0.2 for r in range(layout.n_runs)}  # every run: P(a) = 0.8
    runs[3] = None                                                         # one missing run
    flipped = {r: 1 - p if p is not None else None for r, p in runs.items()}
    table = annotation_table([_row(layout, "x", runs), _row(layout, "y", flipped)], layout)
    features, fl = build_features(table)
    n = layout.n_runs
    assert features.shape == (2, fl.n_features) == (2, 2 * n + 4 + 8)
    assert fl.names[0] == "q[a0,s0,ab]" and fl.names[n] == "present[a0,s0,ab]"
    # q is P(run favours the verdict): 0.8 for both items (pred a for x, b for y)
    assert np.allclose(features[:, 0], 0.8) and np.allclose(features[:, 2], 0.8)
    assert features[0, 3] == 0.0 and features[0, n + 3] == 0.0   # missing: value 0, mask 0
    assert features[0, n + 2] == 1.0
    summaries = dict(zip(fl.names[-8:], features[0, -8:]))
    assert summaries["mean"] == pytest.approx(0.8) and summaries["spread"] == pytest.approx(0, abs=1e-6)
    assert summaries["present_share"] == pytest.approx((n - 1) / n)
    assert summaries["label_mass_present"] == 0.0   # RunResult without label mass


def test_layout_mismatch_is_a_clear_error(small_layout, trap_table):
    other = FeatureLayout(all_subsets_layout(2, 3))
    with pytest.raises(ContractError, match=r"feature layout mismatch: the model was trained on "
                       r"runs \(2, 7, 2\).*the file has runs \(3, 7, 2\)"):
        build_features(trap_table, "file.parquet", other)


def test_item_with_every_run_missing_is_refused(small_layout):
    layout = small_layout
    good = _row(layout, "x", {r: 0.7 for r in range(layout.n_runs)})
    empty = _row(layout, "y", {r: None for r in range(layout.n_runs)})
    table = annotation_table([good, empty], layout)
    with pytest.raises(ContractError, match=r"f.parquet, row 1, field 'probs': every "
                       r"simulated-annotator run is missing"):
        build_features(table, "f.parquet")


def test_file_without_layout_metadata_is_refused(trap_table):
    bare = pa.Table.from_pylist(trap_table.slice(0, 3).to_pylist())
    with pytest.raises(ContractError, match="no run layout in its metadata"):
        build_features(bare, "bare.parquet")


def test_rows_without_a_verdict_are_left_out_of_training_and_counted(trap_table):
    from marc_ray.fit.config import FitConfig
    from marc_ray.fit.data import prepare

    pred = trap_table.column("pred").to_pylist()
    silent = list(range(0, trap_table.num_rows, 7))
    for index in silent:
        pred[index] = None
    table = trap_table.set_column(trap_table.column_names.index("pred"), "pred",
                                  pa.array(pred, pa.string()))
    config = FitConfig()
    full, reduced = prepare(trap_table, config), prepare(table, config)
    assert reduced.n_without_verdict == len(silent) and full.n_without_verdict == 0
    training = {s for s in config.train_splits} | set(config.valid_splits)
    splits = trap_table.column("split").to_pylist()
    dropped = {trap_table.column("id")[i].as_py() for i in silent if splits[i] in training}
    kept_before = set(full.train.ids) | set(full.valid.ids)
    kept_after = set(reduced.train.ids) | set(reduced.valid.ids)
    assert kept_after == kept_before - dropped and dropped


def test_held_out_validation_gets_both_kinds_and_whole_groups(trap_table):
    """No valid split in the file: whole groups are held out, stratified so the validation set
    has disagreement cases even when they are rare."""
    from marc_ray.fit.config import FitConfig
    from marc_ray.fit.data import prepare

    n = trap_table.num_rows
    table = trap_table.set_column(trap_table.column_names.index("split"), "split",
                                  pa.array(["train"] * n, pa.string()))
    groups = pa.array([f"g{i // 3}" for i in range(n)], pa.string())  # 3 items per group
    table = (table.set_column(table.column_names.index("group"), "group", groups)
             if "group" in table.column_names else table.append_column("group", groups))
    # keep few disagreements: relabel all but 4 of them to agree with the verdict
    pred = table.column("pred").to_pylist()
    labels = table.column("human_label").to_pylist()
    wrong = [i for i in range(n) if labels[i] in ("a", "b") and labels[i] != pred[i]]
    for i in wrong[4:]:
        labels[i] = pred[i]
    table = table.set_column(table.column_names.index("human_label"), "human_label",
                             pa.array(labels, pa.string()))
    for seed in range(5):
        data = prepare(table, FitConfig(random_state=seed))
        assert 0 < data.valid.agree.sum() < len(data.valid)       # both kinds held out
        assert 0 < (data.train.agree == 0).sum()                   # and both left to train on
        group = dict(zip(table.column("id").to_pylist(), table.column("group").to_pylist()))
        train_groups = {group[i] for i in data.train.ids}
        valid_groups = {group[i] for i in data.valid.ids}
        assert valid_groups and not train_groups & valid_groups
