"""Replay: run tables and judge panels → the annotation contract, through assemble.annotation_row."""

import math

import numpy as np
import pyarrow as pa
import pytest

from marc_ray.annotate.replay import (panel_annotations, panel_runs, replay_annotations,
                                      replay_metadata, verdict_to_probability)
from marc_ray.datasets.verdicts import verdict_table
from marc_ray.contracts import ContractError, layout_of, validate_annotations, validate_comparisons


def _comparisons(labels=("a", "b", "tie")):
    rows = [{"id": f"x{i}", "instruction": "q", "response_a": "r1", "response_b": "r2",
             "human_label": label, "group": "g"} for i, label in enumerate(labels)]
    return validate_comparisons(pa.Table.from_pylist(rows))


def _verdicts():
    # item x0: both judges say a in both orders; x1: judge J2 flips with the order; x2: J1 ties,
    # J2's ba run is unusable
    rows = []
    for item, table in {"x0": {("J1", "ab"): "a", ("J1", "ba"): "a", ("J2", "ab"): "a", ("J2", "ba"): "a"},
                        "x1": {("J1", "ab"): "b", ("J1", "ba"): "b", ("J2", "ab"): "a", ("J2", "ba"): "b"},
                        "x2": {("J1", "ab"): "tie", ("J1", "ba"): "a", ("J2", "ab"): "b", ("J2", "ba"): None}
                        }.items():
        for (judge, order), verdict in table.items():
            rows.append({"id": item, "judge": judge, "variant": "p", "order": order,
                         "verdict": verdict, "raw": "garbage" if verdict is None else verdict})
    return verdict_table(rows)


def test_verdict_to_probability():
    assert [verdict_to_probability(v) for v in ("a", "b", "tie")] == [1.0, 0.0, 0.5]
    assert math.isnan(verdict_to_probability(None))
    with pytest.raises(ValueError, match=r"verdict must be one of \['a', 'b', 'tie'\]"):
        verdict_to_probability("A")


def test_panel_vote_share_and_predictive():
    table = panel_annotations(_verdicts(), "J1", comparisons=_comparisons())
    table, layout = validate_annotations(table)
    assert layout.shape == (2, 1, 2)
    rows = {r["id"]: r for r in table.to_pylist()}
    # x0: unanimous a
    assert rows["x0"]["probs"] == [1.0, 1.0, 1.0, 1.0]
    assert rows["x0"]["conf_simulated"] == 1.0 and rows["x0"]["pred"] == "a"
    # x1: 3 of 4 votes for b: share of a = 0.25, confidence 0.75; predictive = J1's own: b, 1.0
    assert rows["x1"]["p_simulated"] == pytest.approx(0.25)
    assert rows["x1"]["conf_simulated"] == pytest.approx(0.75) and rows["x1"]["pred"] == "b"
    assert rows["x1"]["p_predictive"] == 0.0 and rows["x1"]["conf_predictive"] == 1.0
    # x2: tie counts half a vote; the unusable run is missing (NaN), not 0.5
    assert math.isnan(rows["x2"]["probs"][3])
    assert rows["x2"]["status"][3] == "missing: unusable verdict (raw 'garbage')"
    assert rows["x2"]["p_simulated"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert rows["x2"]["p_predictive"] == pytest.approx(0.75)  # J1: tie (0.5) and a (1.0)
    assert rows["x2"]["human_label"] == "tie" and rows["x2"]["group"] == "g"
    assert replay_metadata(table)["annotators"] == ["J1/p", "J2/p"]
    assert replay_metadata(table)["zero_shot"] == "zero-shot:J1/p"


def test_panel_without_target_and_errors():
    table = panel_annotations(_verdicts(), "J1", panel=["J2"], comparisons=_comparisons())
    rows = {r["id"]: r for r in table.to_pylist()}
    assert layout_of(table).n_annotators == 1
    assert rows["x1"]["p_simulated"] == pytest.approx(0.5) and rows["x1"]["pred"] == "a"
    assert rows["x1"]["p_predictive"] == 0.0  # the target's own verdicts stay zero-shot
    with pytest.raises(ValueError, match=r"unknown judge 'J3'; the verdicts have \['J1', 'J2'\]"):
        panel_runs(_verdicts(), "J3")
    with pytest.raises(ValueError, match=r"unknown prompt variant 'q'"):
        panel_runs(_verdicts(), "J1", variants=["q"])


def test_probabilities_with_subsets_match_annotation_row_order():
    # an engine's output replayed: two annotators, shot subsets "0" and "0,1", order ba mapped back
    rows = []
    for j, name in enumerate(["ann0", "ann1"]):
        for subset in ("0", "0,1"):
            for order in ("ab", "ba"):
                rows.append({"id": "x0", "annotator": name, "subset": subset, "order": order,
                             "p_response_a": 0.1 * (j + 1) + (0.05 if subset == "0,1" else 0)
                             + (0.01 if order == "ba" else 0)})
    rows.append({"id": "x0", "annotator": "zs", "subset": "0", "order": "ab", "p_response_a": 0.9})
    table = replay_annotations(pa.Table.from_pylist(rows), "judge", zero_shot="zs")
    table, layout = validate_annotations(table)
    assert layout.subsets == ((0,), (0, 1)) and layout.n_annotators == 2
    probs = np.array(table.column("probs").to_pylist()[0]).reshape(layout.shape)
    assert probs[1, 1, 1] == pytest.approx(0.26, abs=1e-6)  # annotator 1, subset {0,1}, order ba
    assert probs[0, 0, 0] == pytest.approx(0.1, abs=1e-6)
    # simulated = full subset only, both annotators and orders; predictive = the one ab run
    assert table.column("p_simulated").to_pylist()[0] == pytest.approx(np.mean([0.15, 0.16, 0.25, 0.26]))
    assert table.column("p_predictive").to_pylist()[0] == pytest.approx(0.9)


@pytest.mark.parametrize("change, message", [
    ({"order": "ab-ba"}, r"row 1, field 'order': order 'ab-ba' is not one of"),
    ({"p_response_a": 1.5}, r"row 1, field 'p_response_a': probability 1.5 outside"),
    ({"p_response_a": "high"}, r"field 'p_response_a': probabilities must be numbers, got string"),
    ({"subset": "0,x"}, r"row 1, field 'subset': subset '0,x' is not comma-separated"),
    ({"annotator": None}, r"row 1, field 'annotator': expected an annotator name"),
])
def test_malformed_run_tables(change, message):
    rows = [{"id": "x0", "annotator": "a", "subset": "0", "order": "ab", "p_response_a": 0.5},
            {"id": "x0", "annotator": "a", "subset": "0", "order": "ba", "p_response_a": 0.5}]
    rows[1].update(change)
    with pytest.raises(ContractError, match=message):
        columns = {key: [row[key] for row in rows] for key in rows[0]}
        if change.get("p_response_a") == "high":
            columns["p_response_a"] = ["0.5", "high"]
        replay_annotations(pa.table(columns), "judge", source="runs.parquet")


def test_run_table_errors():
    rows = [{"id": "x0", "annotator": "a", "order": "ab", "verdict": "a"}] * 2
    with pytest.raises(ContractError, match=r"row 1, field 'id': duplicate run for item 'x0'"):
        replay_annotations(pa.Table.from_pylist(rows), "judge")
    rows = [{"id": "x9", "annotator": "a", "order": "ab", "verdict": "a"}]
    with pytest.raises(ContractError, match=r"row 0, field 'id': id 'x9' is not in the comparisons"):
        replay_annotations(pa.Table.from_pylist(rows), "judge", comparisons=_comparisons())
    with pytest.raises(ContractError, match=r"give exactly one value column"):
        replay_annotations(pa.table({"id": ["x0"], "annotator": ["a"], "order": ["ab"]}), "judge")
    with pytest.raises(ContractError, match=r"field 'verdict': verdict 'A' is not one of"):
        replay_annotations(pa.Table.from_pylist([{"id": "x0", "annotator": "a", "order": "ab",
                                                  "verdict": "A"}]), "judge")
    with pytest.raises(ContractError, match=r"no simulated annotator in the runs"):
        replay_annotations(pa.Table.from_pylist([{"id": "x0", "annotator": "z", "order": "ab",
                                                  "verdict": "a"}]), "judge", zero_shot="z")


def test_verdict_table_errors():
    good = {"id": "x0", "judge": "J", "variant": "p", "order": "ab", "verdict": "a", "raw": "1"}
    with pytest.raises(ContractError, match=r"row 1, field 'id': duplicate run"):
        verdict_table([good, good], "v.json")
    with pytest.raises(ContractError, match=r"v.json, row 0, field 'verdict': verdict 'A'"):
        verdict_table([dict(good, verdict="A")], "v.json")
    with pytest.raises(ContractError, match=r"row 0, field 'judge': expected non-empty text"):
        verdict_table([dict(good, judge="")], "v.json")


def test_every_comparison_gets_a_row_even_without_runs():
    verdicts = _verdicts().filter(pa.compute.not_equal(pa.compute.field("id"), "x2"))
    table = panel_annotations(verdicts, "J1", comparisons=_comparisons())
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rows["x2"]["pred"] is None and math.isnan(rows["x2"]["conf_simulated"])
    assert set(rows["x2"]["status"]) == {"missing: not run"}


def test_real_panels(shared_data):
    from marc_ray.datasets import load_llmbar, load_llmbar_verdicts, load_pandalm, load_pandalm_verdicts

    llmbar = panel_annotations(load_llmbar_verdicts(shared_data / "llmbar"), "GPT-4",
                               comparisons=load_llmbar(shared_data / "llmbar"))
    llmbar, layout = validate_annotations(llmbar)
    assert llmbar.num_rows == 885 and layout.shape == (12, 1, 2)  # 6 judges x 2 prompts
    assert replay_metadata(llmbar)["zero_shot"] == "zero-shot:GPT-4/Vanilla_NoRules"
    human = np.array(llmbar.column("human_label").to_pylist())
    p_pred = llmbar.column("p_predictive").to_numpy()
    agree_gpt4 = np.mean(np.where(p_pred >= 0.5, "a", "b")[np.isfinite(p_pred)] == human[np.isfinite(p_pred)])
    assert 0.74 < agree_gpt4 < 0.80
    pandalm = panel_annotations(load_pandalm_verdicts(shared_data / "pandalm"), "gpt-3.5-turbo",
                                comparisons=load_pandalm(shared_data / "pandalm"))
    conf = pandalm.column("conf_simulated").to_numpy()
    assert sorted(np.unique(conf).tolist()) == [0.5, 0.75, 1.0]  # vote share of 2 judges, 1 order
