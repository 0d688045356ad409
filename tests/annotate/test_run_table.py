"""The replay's run-table reader: every accepted shape gives the same annotations as the
canonical long table, OpenAI-compatible answers are read as the HTTP engine reads them, and
anything else is refused naming the file, the row and the columns expected."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marc_ray.annotate.http_engine import HttpEngine
from marc_ray.annotate.replay import panel_runs, replay_annotations, write_replay
from marc_ray.contracts import ContractError, read_table, validate_comparisons
from marc_ray.datasets.verdicts import verdict_table

from test_http_engine import ScriptedServer, chat, choice_run, completion


def _comparisons(n=4):
    rows = [{"id": f"x{i}", "instruction": "q", "response_a": "r1", "response_b": "r2",
             "human_label": "a", "split": "test"} for i in range(n)]
    return validate_comparisons(pa.Table.from_pylist(rows))


def _same_annotations(got: pa.Table, want: pa.Table) -> None:
    for name in ("id", "status", "pred"):
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    for name in ("probs", "zero_shot_probs", "conf_simulated", "conf_predictive"):
        np.testing.assert_array_equal(np.array(got.column(name).to_pylist(), dtype=float),
                                      np.array(want.column(name).to_pylist(), dtype=float))


# ---- NaN follows the rule of 1.5; null is a missing run ---------------------------------------

def test_nan_probability_is_refused_like_an_out_of_range_one(tmp_path):
    rows = [{"id": "x0", "annotator": "a", "order": "ab", "p_response_a": 0.7},
            {"id": "x0", "annotator": "a", "order": "ba", "p_response_a": math.nan}]
    path = str(tmp_path / "runs.parquet")
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(ContractError, match=r"runs.parquet, row 1, field 'p_response_a': "
                                            r"probability nan outside \[0, 1\].*never NaN"):
        write_replay(path, "judge", str(tmp_path / "out.parquet"), comparisons=_comparisons(1))
    rows[1]["p_response_a"] = None  # null: a missing run, recorded as such
    table = replay_annotations(pa.Table.from_pylist(rows), "judge", comparisons=_comparisons(1))
    assert table.column("status").to_pylist()[0] == ["ok", "missing: no probability"]


# ---- (b) the long table, `run` for `annotator` ------------------------------------------------

def test_run_is_another_name_for_the_annotator_column():
    rows = [{"id": f"x{i}", "annotator": name, "order": order, "verdict": verdict}
            for i in range(4) for name in ("m1", "m2") for order, verdict in
            (("ab", "a"), ("ba", "b" if i % 2 else "tie"))]
    canonical = replay_annotations(pa.Table.from_pylist(rows), "judge", comparisons=_comparisons())
    renamed = pa.Table.from_pylist(rows).rename_columns(["id", "run", "order", "verdict"])
    _same_annotations(replay_annotations(renamed, "judge", comparisons=_comparisons()), canonical)
    with pytest.raises(ContractError, match=r"give the annotator in one column"):
        replay_annotations(pa.Table.from_pylist(rows).append_column("run", pa.array(["m"] * 16)),
                           "judge")


# ---- (a) the verdict export, as is --------------------------------------------------------------

def _verdict_rows():
    return [{"id": f"x{i}", "judge": judge, "variant": variant, "order": order,
             "verdict": ["a", "b", "tie", None][(i + len(judge) + len(variant) + len(order)) % 4],
             "raw": "raw text"}
            for i in range(4) for judge in ("J1", "J22") for variant in ("p", "qq")
            for order in ("ab", "ba")]


def test_the_verdict_export_replays_as_a_panel_of_judge_variants(tmp_path):
    verdicts = verdict_table(_verdict_rows())
    path = str(tmp_path / "v.parquet")
    pq.write_table(verdicts, path, row_group_size=5)
    out = str(tmp_path / "annotations.parquet")
    assert write_replay(path, "judge", out, comparisons=_comparisons()) == 4
    got = read_table(out)
    # the same as the long table with annotator = "judge/variant"
    runs, _, members = panel_runs(verdicts, "J1")
    runs = runs.filter(pa.compute.invert(pa.compute.starts_with(runs.column("annotator"),
                                                                "zero-shot:")))
    want = replay_annotations(runs, "judge", comparisons=_comparisons(), annotators=members)
    _same_annotations(got, want)
    assert json.loads(got.schema.metadata[b"marc_ray.replay"])["annotators"] == \
        ["J1/p", "J1/qq", "J22/p", "J22/qq"]


def test_the_exported_pandalm_verdicts_replay(shared_data, tmp_path):
    from marc_ray.cli import main
    from marc_ray.datasets import load_pandalm

    path = str(tmp_path / "v.parquet")
    assert main(["datasets", "export", "pandalm", path, "--verdicts"]) == 0
    verdicts = read_table(path)
    table = replay_annotations(verdicts, "pandalm-judges", comparisons=load_pandalm())
    assert table.num_rows == 999
    assert json.loads(table.schema.metadata[b"marc_ray.replay"])["annotators"] == \
        ["gpt-3.5-turbo/default", "pandalm-7b/default"]
    ok = sum(status.count("ok") for status in table.column("status").to_pylist())
    assert ok == verdicts.num_rows - verdicts.column("verdict").null_count  # every usable verdict


# ---- (d) one judge in both orders ---------------------------------------------------------------

def test_one_judge_in_both_orders_is_its_own_annotator_and_zero_shot():
    rows = [{"id": f"x{i}", "order": order, "verdict": verdict}
            for i, (ab, ba) in enumerate([("a", "a"), ("b", "a"), ("tie", "b"), (None, "b")])
            for order, verdict in (("ab", ab), ("ba", ba))]
    table = replay_annotations(pa.Table.from_pylist(rows), "gpt", comparisons=_comparisons())
    assert json.loads(table.schema.metadata[b"marc_ray.replay"])["annotators"] == ["gpt"]
    np.testing.assert_array_equal(table.column("conf_predictive").to_numpy(), [1.0, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(table.column("conf_simulated").to_numpy(), [1.0, 0.5, 0.75, 1.0])
    assert table.column("pred").to_pylist() == ["a", "a", "b", "b"]
    assert table.column("status").to_pylist()[3] == ["missing: unusable verdict", "ok"]


# ---- (c) OpenAI-compatible answers --------------------------------------------------------------

TOPS = [{"A": math.log(0.2), " A": math.log(0.1), "B": math.log(0.3), "Hi": math.log(0.4)},
        {" B": math.log(0.6), "A": math.log(0.05)},
        {"Hello": math.log(0.9)},  # neither label in the top k: missing, as the engine says
        {"B": math.log(0.5), " B": math.log(0.2), " A": math.log(0.25)}]


@pytest.mark.parametrize("endpoint, answer", [("completions", completion), ("chat", chat)])
def test_saved_answers_read_as_the_http_engine_reads_them(tmp_path, endpoint, answer):
    # the HTTP engine, live, over a real socket
    script = [(200, answer(top), None) for top in TOPS]
    with ScriptedServer(script + script[-1:]) as server:
        live = HttpEngine(server.base_url, "judge", endpoint=endpoint, concurrency=1).judge(
            [choice_run(i) for i in range(len(TOPS))])
    # the same answers saved: a batch job's output (custom_id), and answers saved one per line
    orders = ["ab", "ba", "ab", "ba"]
    batch = tmp_path / "batch_output.jsonl"
    batch.write_text("".join(json.dumps({
        "id": f"batch_req_{i}", "custom_id": f"x{i}::{orders[i]}", "error": None,
        "response": {"status_code": 200, "request_id": "r", "body": answer(top)}}) + "\n"
        for i, top in enumerate(TOPS)))
    saved = tmp_path / "answers.json"  # JSON lines named .json
    saved.write_text("".join(json.dumps({"id": f"x{i}", "order": orders[i],
                                         "response": answer(top)}) + "\n"
                             for i, top in enumerate(TOPS)))
    for path in (batch, saved):
        table = replay_annotations(str(path), "judge", comparisons=_comparisons())
        probs = np.array(table.column("probs").to_pylist(), dtype=float)
        status = table.column("status").to_pylist()
        for i, result in enumerate(live):
            run = 0 if orders[i] == "ab" else 1
            other = probs[i, 1 - run]
            assert math.isnan(other)
            if result.status == "ok":
                # P(first shown) mapped back: ab → P(response_a), ba → 1 − it
                want = result.p_first if orders[i] == "ab" else 1.0 - result.p_first
                assert probs[i, run] == pytest.approx(want, abs=1e-7)
                assert status[i][run] == "ok"
            else:
                assert math.isnan(probs[i, run])
                assert status[i][run] == "missing: no probability (raw 'labels not in top-k logprobs')"
    assert [r.status for r in live].count("ok") == 3


def test_failed_requests_and_custom_labels(tmp_path):
    lines = [{"custom_id": "x0::m1::ab", "response": {"status_code": 200,
                                                      "body": completion({"1": math.log(0.8)})}},
             {"custom_id": "x0::m1::ba", "response": {"status_code": 429, "body": {}}},
             {"custom_id": "x1::m1::ab", "error": {"code": "server_error"}, "response": None}]
    path = tmp_path / "out.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    table = replay_annotations(str(path), "judge", comparisons=_comparisons(2), labels=("1", "2"))
    assert table.column("probs").to_pylist()[0][0] == 1.0
    status = table.column("status").to_pylist()
    assert status[0][1] == "missing: no probability (raw 'the request failed with HTTP 429')"
    assert "(raw \"the request failed: {'code': 'server_error'}\")" in status[1][0]


# ---- anything else is refused --------------------------------------------------------------------

@pytest.mark.parametrize("rows, message", [
    ([{"item": "x0", "order": "ab", "verdict": "a"}],
     r"runs.parquet: not a run table \(columns present: item, order, verdict\).*expected one of "
     r"these shapes: runs: id, annotator \(or run\)"),
    ([{"id": "x0", "order": "ab", "score": 0.3}], r"not a run table \(columns present: id, order, score\)"),
    ([{"id": "x0", "judge": "J", "order": "ab", "verdict": "a"}], r"not a run table"),
])
def test_other_tables_are_refused_naming_the_columns_expected(tmp_path, rows, message):
    path = tmp_path / "runs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(ContractError, match=message):
        replay_annotations(str(path), "judge", source=str(path))


@pytest.mark.parametrize("line, message", [
    ({"custom_id": "x0", "response": {"body": {}}}, r"row 1, field 'custom_id': custom_id 'x0' is not"),
    ({"custom_id": "x0::up", "response": {"body": {}}}, r"row 1, field 'custom_id': order 'up'"),
    ({"order": "ab", "response": {}}, r"row 1, field 'id': missing key"),
    ({"prompt": "x"}, r"row 1: not a run table \(columns present: prompt\)"),
])
def test_malformed_answer_lines_name_the_row(tmp_path, line, message):
    good = {"custom_id": "x0::ab", "response": {"status_code": 200, "body": completion(TOPS[0])}}
    path = tmp_path / "answers.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(ContractError, match=message):
        replay_annotations(str(path), "judge", source=str(path))


# ---- the documented examples replay as documented ------------------------------------------------

def _documented_examples() -> dict[str, list[dict]]:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "engines.md").read_text()
    section = text[text.index("## Replay"):]
    blocks = {}
    for shape in "abcd":
        start = section.index(f"**({shape})")
        block = re.search(r"```json\n(.*?)```", section[start:], re.S).group(1)
        blocks[shape] = [json.loads(line) for line in block.splitlines() if line.strip()]
    return blocks


@pytest.mark.parametrize("shape", list("abcd"))
def test_each_documented_five_line_example_replays(tmp_path, shape):
    lines = _documented_examples()[shape]
    assert len(lines) == 5
    ids = sorted({line.get("id") or line["custom_id"].split("::")[0] for line in lines})
    comparisons = validate_comparisons(pa.Table.from_pylist(
        [{"id": i, "instruction": "q", "response_a": "r1", "response_b": "r2", "human_label": "a"}
         for i in ids]))
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    table = replay_annotations(str(path), "judge", comparisons=comparisons)
    statuses = [s for row in table.column("status").to_pylist() for s in row]
    ok = statuses.count("ok")
    missing_given = sum(1 for s in statuses if s.startswith("missing:") and s != "missing: not run")
    assert ok + missing_given == 5  # every documented line is one run, read or missing with a reason
    if shape == "c":  # q1 ab: P(A) = e^-0.2 / (e^-0.2 + e^-1.9) read at the answer position
        p = table.column("probs").to_pylist()[0][0]
        assert p == pytest.approx(math.exp(-0.2) / (math.exp(-0.2) + math.exp(-1.9)), abs=1e-6)


def test_the_built_once_id_index_finds_what_index_in_finds():
    """TextIndex (the replay's item lookup, hashed once) against ``codes`` (pc.index_in on every
    call): plain and dictionary columns, nulls, unknown values, a repeated value (first wins)."""
    from marc_ray.annotate.run_table import TextIndex

    class Colliding(TextIndex):  # three hash values for all: every lookup walks collisions
        @staticmethod
        def _hashes_of(texts):
            return np.array([len(text) % 3 for text in texts.to_pylist()], np.int64)

    values = pa.array([f"item-{i}" for i in range(500)] + ["item-3"])  # "item-3" again: 3 wins
    for index in (TextIndex(values), Colliding(values)):
        _the_same_as_index_in(index, values)
    assert TextIndex(pa.array([1, 2, 3]))(pa.array(["2"])).tolist() == [1]  # numbers as text


def _the_same_as_index_in(index, values):
    from marc_ray.annotate.run_table import codes

    rng = np.random.default_rng(7)
    picks = [None if k % 17 == 0 else f"item-{k}" for k in rng.integers(0, 700, 5000)]
    chunked = pa.chunked_array([pa.array(picks[:2000], pa.string()),
                                pa.array(picks[2000:], pa.string())])
    for column in (pa.array(picks, pa.string()), pa.array(picks, pa.string()).dictionary_encode(),
                   chunked):
        found = index(column)
        assert found.tolist() == codes(pa.array(picks, pa.string()), values).tolist()
        assert (found == -1).sum() == sum(p is None or int(p[5:]) >= 500 for p in picks)
    assert index(pa.array(["item-3", "item-499", "item-500"])).tolist() == [3, 499, -1]
