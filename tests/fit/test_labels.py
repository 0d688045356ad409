import numpy as np
import pytest

from marc_ray.annotate.assemble import annotation_row, annotation_table
from marc_ray.annotate.engine import RunResult
from marc_ray.contracts import ContractError
from marc_ray.fit.labels import HELD_OUT_STATUS, human_labels, simulated_view


def _table(layout, labels, votes=None, p=0.9):
    rows = []
    for index, label in enumerate(labels):
        results = {r: RunResult(p if r % 2 == 0 else 1 - p) for r in range(layout.n_runs)}
        carried = {"human_label": label}
        if votes is not None:
            carried.update(zip(("votes_a", "votes_b", "votes_tie"), votes[index]))
        rows.append(annotation_row(f"i{index}", "j", layout, results, carried))
    return annotation_table(rows, layout)


def test_tie_policies_and_soft_targets(small_layout):
    table = _table(small_layout, ["a", "b", "tie", "a"], votes=[(2, 1, 0), (0, 3, 0), (1, 1, 1), (3, 0, 0)])
    agree, kept, soft = human_labels(table, "drop")          # pred is "a" everywhere
    assert kept.tolist() == [True, True, False, True]
    assert agree.tolist() == [1.0, 0.0, 1.0]
    assert soft == pytest.approx([2 / 3, 0.0, 1.0])
    agree, kept, _ = human_labels(table, "disagree")
    assert kept.all() and agree.tolist() == [1.0, 0.0, 0.0, 1.0]


def test_no_human_labels_is_a_clear_error(small_layout):
    table = _table(small_layout, [None, None])
    with pytest.raises(ContractError, match="no row has a human label.*label_mode='simulated'"):
        human_labels(table, source="x.parquet")


def test_simulated_view_holds_one_annotator_out(small_layout):
    layout = small_layout
    results = {}
    for j in range(layout.n_annotators):
        for s in range(layout.n_subsets):
            for o in range(2):
                p_a = 0.2 if j == 0 else 0.7            # annotator 0 prefers b, the others a
                results[layout.run_index(j, s, o)] = RunResult(p_a if o == 0 else 1 - p_a)
    table = annotation_table([annotation_row("x", "j", layout, results, {"human_label": "a"})], layout)
    view = simulated_view(table, 0)
    row = view.to_pylist()[0]
    held = [layout.run_index(0, s, o) for s in range(layout.n_subsets) for o in range(2)]
    assert all(np.isnan(row["probs"][r]) and row["status"][r] == HELD_OUT_STATUS for r in held)
    assert row["human_label"] == "b" and row["pred"] == "a"
    assert row["conf_simulated"] == pytest.approx(0.7)
    agree, kept, _ = human_labels(view)
    assert agree.tolist() == [0.0]
    with pytest.raises(ContractError, match=r"held_out_annotator 5 is not in 0..2"):
        simulated_view(table, 5)


def test_simulated_mode_trains_on_pseudo_humans_and_scores_real_data(trap_table):
    from marc_ray.fit import FitConfig, MarcConfidence
    from marc_ray.fit.baselines import evaluate_measures

    model = MarcConfidence(FitConfig(label_mode="simulated", held_out_annotator=1, epochs=3,
                                     n_pairs=500)).fit(trap_table)
    scores = model.score(trap_table)           # real pred, annotator 1's runs hidden
    assert np.isfinite(scores).all()
    (row,) = evaluate_measures(trap_table, {"marc_simulated": scores})
    assert 0.0 <= row["ranking_risk"] <= 1.0 and row["n"] > 50
