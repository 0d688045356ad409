"""``marc-ray winrate RUN_DIR`` on real run files: numbers, training rows, ties, refusals."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marc_ray.cli import main
from marc_ray.contracts import ContractError, validate_comparisons
from marc_ray.run_folder import RunFolder
from marc_ray.winrate import ppi
from marc_ray.winrate.estimate import win_rates
from marc_ray.winrate.items import read_run
from run_toys import JUDGE, STRENGTHS, build_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("run") / "run")


def record_of(path, **kwargs):
    return win_rates(read_run(str(path)), **kwargs)


def test_cli_writes_the_section_and_recovers_the_true_order(run, tmp_path, capsys):
    out = tmp_path / "wr"
    assert main(["winrate", str(run), "--out", str(out)]) == 0
    record = json.loads((out / "winrate.json").read_text())
    assert (out / "figures" / "winrate_leaderboard.png").stat().st_size > 5000
    assert "Win rates" in (out / "winrate.md").read_text()
    board = record["leaderboard"]["models"]
    assert [m["model"] for m in board] == list(STRENGTHS)  # strongest first
    for m in board:  # truth within a generous distance, and judge-only pulled toward 0
        assert abs(m["strength"] - STRENGTHS[m["model"]]) < 0.3
        assert m["low"] < m["strength"] < m["high"]
    assert abs(board[0]["judge_only"]) < abs(board[0]["strength"]) - 0.2
    assert len(record["pairs"]) == 3 and record["tie_policy"] == "drop"


def test_pair_numbers_are_ppi_on_the_eligible_rows(run):
    record = record_of(run)
    scores = pq.read_table(RunFolder(str(run)).scores(JUDGE)).to_pylist()
    comparisons = {r["id"]: r for r in pq.read_table(RunFolder(str(run)).comparisons).to_pylist()}
    pair = record["pairs"][0]
    first, second = pair["first"], pair["second"]
    valid_ids = set(json.loads((run / "fit" / JUDGE / "config.json").read_text())["valid_ids"])
    y, f, f_unl = [], [], []
    for row in scores:
        c = comparisons[row["id"]]
        if {c["model_a"], c["model_b"]} != {first, second} or row["human_label"] == "tie":
            continue
        x_is_a = c["model_a"] == first
        p = row["p_simulated"] if x_is_a else 1 - row["p_simulated"]
        if row["split"] != "train" and row["id"] not in valid_ids:
            y.append(float((row["human_label"] == "a") == x_is_a))
            f.append(p)
        else:
            f_unl.append(p)
    expected = ppi.ppi_mean(np.array(y), np.array(f), np.array(f_unl), 0.1)
    assert pair["n_labelled"] == len(y) and pair["n_unlabelled"] == len(f_unl)
    assert pair["ppi"]["estimate"] == pytest.approx(float(expected.estimate))
    assert pair["ppi"]["low"] == pytest.approx(float(expected.low))
    assert pair["human_only"]["estimate"] == pytest.approx(np.mean(y))
    assert pair["ppi"]["high"] - pair["ppi"]["low"] <= pair["human_only"]["high"] - pair["human_only"]["low"]


def test_training_rows_are_never_labelled(tmp_path):
    """Flipping every label of the rows that trained the confidence model changes nothing."""
    base = record_of(build_run(tmp_path / "a", seed=3))

    def flip_training(rows):
        for row in rows:
            if row["split"] == "train" and row["human_label"] in ("a", "b"):
                row["human_label"] = "b" if row["human_label"] == "a" else "a"

    flipped = record_of(build_run(tmp_path / "b", seed=3, mutate=flip_training))
    # the toy's score file takes its labels from the (mutated) comparisons too
    assert flipped["pairs"] == base["pairs"]
    assert flipped["leaderboard"] == base["leaderboard"]
    assert base["n_training_excluded"] > 200


def test_valid_ids_of_the_fitted_model_are_not_labelled(run):
    items = read_run(str(run))
    valid_ids = json.loads((run / "fit" / JUDGE / "config.json").read_text())["valid_ids"]
    assert not items.eligible[np.isin(items.ids, valid_ids)].any()
    assert items.eligible[~np.isin(items.ids, valid_ids) & (items.human_label != None)].any()  # noqa: E711


def test_tie_policy_disagree_counts_a_tie_as_half(tmp_path):
    dropped = record_of(build_run(tmp_path / "d", seed=5, tie_share=0.2))
    halved = record_of(build_run(tmp_path / "h", seed=5, tie_share=0.2, tie_policy="disagree"))
    for d, h in zip(dropped["pairs"], halved["pairs"]):
        assert h["n_ties_dropped"] == 0 < d["n_ties_dropped"]
        assert h["n_labelled"] > d["n_labelled"]
        # half-wins pull the rate toward 1/2
        assert abs(h["human_only"]["estimate"] - 0.5) < abs(d["human_only"]["estimate"] - 0.5)
    assert "half a win" in halved["tie_rule"]


def test_selective_view_counts(run):
    record = record_of(run)
    items = read_run(str(run))
    for pair in record["pairs"]:
        in_pair = np.isin(items.model_a, [pair["first"], pair["second"]]) & \
            np.isin(items.model_b, [pair["first"], pair["second"]])
        selective = pair["selective"]
        assert selective["n_decided"] + selective["n_escalated"] == int((in_pair & items.eligible).sum())
        assert pair["labels_to_halve"] >= 2 * pair["n_labelled"]  # ~3n when the judge term is small


# -- refusals: ContractError naming file, row and field; exit 2 -------------------------------

def test_a_pair_with_no_labelled_item_is_refused(tmp_path, capsys):
    def new_pair_in_training_only(rows):
        for row in rows[:40]:
            row["model_a"], row["model_b"], row["split"] = "delta-7b", "eps-7b", "train"

    run = build_run(tmp_path / "r", seed=6, mutate=new_pair_in_training_only)
    assert main(["winrate", str(run)]) == 2
    error = capsys.readouterr().err
    assert "comparisons.parquet, row 0, field 'human_label'" in error
    assert "(delta-7b, eps-7b) has no labelled item" in error and "at least 30" in error
    with pytest.raises(ContractError, match="no labelled item"):
        record_of(run)


def test_too_few_labels_is_refused_then_listed_with_sparse_skip(tmp_path, capsys):
    def small_pair(rows):
        for index, row in enumerate(rows[:12]):
            row["model_a"], row["model_b"] = ("delta-7b", "eps-7b") if index % 2 else ("eps-7b", "delta-7b")
            row["split"] = "calibration"

    run = build_run(tmp_path / "r", seed=7, mutate=small_pair)
    assert main(["winrate", str(run)]) == 2
    error = capsys.readouterr().err
    assert "pair (delta-7b, eps-7b)" in error and "the interval needs at least 30" in error
    assert ", row 0, field 'human_label'" in error
    assert main(["winrate", str(run), "--sparse", "skip", "--out", str(tmp_path / "o")]) == 0
    record = json.loads((tmp_path / "o" / "winrate.json").read_text())
    skipped = [p for p in record["pairs"] if "skipped" in p]
    assert [(p["first"], p["second"]) for p in skipped] == [("delta-7b", "eps-7b")]
    assert "ppi" in record["pairs"][0]


def test_a_model_named_on_one_side_only_is_refused(tmp_path):
    import pyarrow as pa

    rows = [{"id": "1", "instruction": "q", "response_a": "x", "response_b": "y", "model_a": "m"},
            {"id": "2", "instruction": "q", "response_a": "x", "response_b": "y"}]
    with pytest.raises(ContractError, match=r"c.jsonl, row 0, field 'model_b': a model is named on one side only"):
        validate_comparisons(pa.Table.from_pylist(rows), "c.jsonl")


def test_a_run_without_model_names_is_refused(tmp_path, capsys):
    def no_names(rows):
        for row in rows:
            row.pop("model_a"), row.pop("model_b")

    run = build_run(tmp_path / "r", seed=8, mutate=no_names)
    assert main(["winrate", str(run)]) == 2
    assert "field 'model_a': no comparison names its models" in capsys.readouterr().err


def test_report_section_written_beside_the_report(run, tmp_path):
    from marc_ray.report.winrate_section import write_winrate_section

    paths = write_winrate_section(str(run), str(tmp_path / "report"))
    assert set(paths) == {"winrate_json", "winrate_md", "winrate_html", "winrate_figure"}
    assert "<h2 id='win-rates'>Win rates</h2>" in (tmp_path / "report" / "winrate.html").read_text()


def test_report_section_absent_without_names_and_never_fails(tmp_path):
    from marc_ray.report.winrate_section import write_winrate_section

    def no_names(rows):
        for row in rows:
            row.pop("model_a"), row.pop("model_b")

    assert write_winrate_section(str(build_run(tmp_path / "n", seed=9, mutate=no_names)),
                                 str(tmp_path / "o1")) == {}

    def all_training(rows):  # every labelled row trained: no pair, no model has an interval
        for row in rows:
            row["split"] = "train"

    paths = write_winrate_section(str(build_run(tmp_path / "t", seed=9, mutate=all_training)),
                                  str(tmp_path / "o2"))
    record = json.loads((tmp_path / "o2" / "winrate.json").read_text())
    assert "winrate_figure" not in paths and all("skipped" in p for p in record["pairs"])
    assert record["leaderboard"]["models"] == []

    def twelve_labelled(rows):  # a few labels per model: every model is left out, and said so
        for index, row in enumerate(rows):
            row["split"] = "calibration" if index < 12 else "train"

    write_winrate_section(str(build_run(tmp_path / "f", seed=9, mutate=twelve_labelled)),
                          str(tmp_path / "o3"))
    record = json.loads((tmp_path / "o3" / "winrate.json").read_text())
    assert sorted(record["leaderboard"]["skipped_models"]) == sorted(STRENGTHS)
    assert "fewer than 20 labelled items each" in (tmp_path / "o3" / "winrate.md").read_text()

    broken = build_run(tmp_path / "b", seed=9)  # a comparisons file edited after prepare
    path = RunFolder(str(broken)).comparisons
    table = pq.read_table(path)
    names = table.column("model_b").to_pylist()
    names[3] = None
    pq.write_table(table.set_column(table.column_names.index("model_b"), "model_b",
                                    pa.array(names, pa.string())), path)
    paths = write_winrate_section(str(broken), str(tmp_path / "o4"))
    assert list(paths) == ["winrate_md"]
    text = (tmp_path / "o4" / "winrate.md").read_text()
    assert "No win rates for this run" in text and "row 3, field 'model_b'" in text


def test_a_model_with_too_few_labels_is_refused_from_the_leaderboard(tmp_path, capsys):
    def few_for_one_model(rows):  # a fourth model in 40 items, at most 10 of them labels
        for index, row in enumerate(rows[:40]):
            row["model_b"] = "delta-7b"
            row["split"] = "calibration" if index < 10 else "train"

    run = build_run(tmp_path / "r", seed=10, mutate=few_for_one_model)
    items = read_run(str(run))
    with pytest.raises(ContractError, match=r"model 'delta-7b' is in \d labelled item\(s\).*at least 20"):
        from marc_ray.winrate.estimate import leaderboard
        leaderboard(items)
    from marc_ray.winrate.estimate import leaderboard
    board = leaderboard(items, sparse="skip")
    assert board["skipped_models"] == ["delta-7b"] and len(board["models"]) == 3


def test_a_pair_whose_labels_all_agree_is_flagged(tmp_path):
    """Every labelled outcome equal: the normal interval has zero width; the record says so."""
    def x_always_wins(rows):
        for index, row in enumerate(rows[:80]):
            row["model_a"], row["model_b"] = ("delta-7b", "eps-7b")
            row["split"], row["human_label"] = ("calibration", "a") if index < 40 else ("train", "b")

    record = record_of(build_run(tmp_path / "r", seed=11, mutate=x_always_wins), sparse="skip")
    pair = next(p for p in record["pairs"] if p["first"] == "delta-7b")
    assert pair["human_only"]["low"] == pair["human_only"]["high"] == 1.0
    assert "labelled outcomes are equal" in pair["warning"]
    assert all("warning" not in p for p in record["pairs"] if p["first"] != "delta-7b")
