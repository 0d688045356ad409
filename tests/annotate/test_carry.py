"""Carrying an extra comparison column (``AnnotateConfig.carry``) into the annotation rows.

The column ``calibrate.by`` names (a language, a dataset) must reach every annotation row, from
the engines' assembly (``job._write_shard``) and from replay alike, as text; a run that carries
nothing keeps the contract's schema; a bad column is refused naming the file, row and field.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from marc_ray.annotate import job
from marc_ray.annotate.config import AnnotateConfig
from marc_ray.annotate.engine import RunResult
from marc_ray.annotate.job import annotate, prepare
from marc_ray.annotate.replay import replay_annotations
from marc_ray.contracts import (ANNOTATION_SCHEMA, ContractError, RunLayout, annotation_schema,
                                check_present, read_table, validate_annotations,
                                validate_comparisons)

from annotate_toys import arithmetic_rows, write_jsonl

LANGUAGES = ("en", "fr", "de")


def with_language(rows: list[dict]) -> list[dict]:
    return [{**row, "language": LANGUAGES[i % 3], "level": i % 2} for i, row in enumerate(rows)]


def test_validate_comparisons_keeps_carried_columns_as_text():
    table = pa.Table.from_pylist(with_language(arithmetic_rows("x", 0, 4)))
    plain = validate_comparisons(table, "c.jsonl")
    assert "language" not in plain.column_names  # nothing carried: the contract's columns only
    kept = validate_comparisons(table, "c.jsonl", carry=["language", "level", "group"])
    assert kept.column_names[-2:] == ["language", "level"]
    assert kept.column("language").to_pylist() == ["en", "fr", "de", "en"]
    assert kept.column("level").to_pylist() == ["0", "1", "0", "1"]  # numbers as their digits
    assert kept.schema.field("level").type == pa.string()


@pytest.mark.parametrize("carry, values, match", [
    (["language"], None,
     r"c\.jsonl, field 'language': missing column \(a carried column.*columns present: id"),
    (["language"], [["en"], ["fr"]], r"c\.jsonl, row 0, field 'language'.*one value per item"),
    (["probs"], None, r"field 'probs'.*already hold"),
    (["conf_marc"], None, r"field 'conf_marc'.*confidence column"),
])
def test_a_column_that_cannot_be_carried_is_refused(carry, values, match):
    rows = arithmetic_rows("x", 0, 2)
    if values is not None:
        rows = [{**row, "language": value} for row, value in zip(rows, values)]
    with pytest.raises(ContractError, match=match):
        validate_comparisons(pa.Table.from_pylist(rows), "c.jsonl", carry=carry)


def test_check_present_names_the_first_row_without_a_value():
    rows = with_language(arithmetic_rows("x", 0, 4))
    rows[1]["language"], rows[2]["language"] = None, " "
    table = validate_comparisons(pa.Table.from_pylist(rows), "c.jsonl", carry=["language"])
    check_present(table, "language", "c.jsonl", rows=[True, False, False, True])  # fine
    with pytest.raises(ContractError, match=r"c\.jsonl, row 1, field 'language': missing value "
                                            r"on a calibration row"):
        check_present(table, "language", "c.jsonl", why="calibration")
    with pytest.raises(ContractError, match=r"row 2, field 'language': empty value"):
        check_present(table, "language", "c.jsonl", rows=[False, False, True, True])


def test_the_schema_is_unchanged_when_nothing_is_carried():
    layout = RunLayout(1, ((0,),))
    assert annotation_schema(layout).remove_metadata() == ANNOTATION_SCHEMA
    assert annotation_schema(layout, ["group", "split"]).remove_metadata() == ANNOTATION_SCHEMA
    extended = annotation_schema(layout, ["language"])
    assert extended.names == ANNOTATION_SCHEMA.names + ["language"]
    assert extended.metadata == annotation_schema(layout).metadata


def test_config_carry_is_validated_and_parsed():
    config = AnnotateConfig.from_dict({"input": "i", "output": "o", "engine": "replay",
                                       "carry": "language,level"}).validate()
    assert config.carry == ("language", "level")
    assert config.to_dict()["carry"] == ["language", "level"]
    with pytest.raises(ValueError, match=r"annotate config: carry must be comparison column "
                                         r"names, got \('pred',\)"):
        AnnotateConfig(input="i", output="o", engine="replay", carry=("pred",)).validate()


def test_replay_carries_the_column(tmp_path):
    rows = with_language(arithmetic_rows("item-", 0, 6))
    comparisons = validate_comparisons(pa.Table.from_pylist(rows), carry=["language"])
    runs = pa.Table.from_pylist([{"id": r["id"], "annotator": "j", "order": o, "verdict": "a"}
                                 for r in rows for o in ("ab", "ba")])
    table = replay_annotations(runs, "panel", comparisons=comparisons, carry=["language"])
    validate_annotations(table)
    assert table.column("language").to_pylist() == [LANGUAGES[i % 3] for i in range(6)]
    assert replay_annotations(runs, "panel", comparisons=comparisons).schema.names == \
        ANNOTATION_SCHEMA.names
    with pytest.raises(ContractError, match="field 'level'"):  # not kept by the validation
        replay_annotations(runs, "panel", comparisons=comparisons, carry=["level"])


def test_the_replay_engine_job_carries_and_refuses(tmp_path):
    rows = with_language(arithmetic_rows("item-", 0, 6))
    runs = [{"id": r["id"], "annotator": "j", "order": o, "verdict": "b"} for r in rows
            for o in ("ab", "ba")]
    runs_path = write_jsonl(tmp_path / "runs.jsonl", runs)
    config = AnnotateConfig(input=write_jsonl(tmp_path / "items.jsonl", rows),
                            output=str(tmp_path / "out"), engine="replay", judge_name="panel",
                            engine_options={"runs": runs_path}, carry=("language",))
    annotate(config)
    table = read_table(config.output)
    assert table.column("language").to_pylist() == [LANGUAGES[i % 3] for i in range(6)]
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, arithmetic_rows("item-", 0, 6))
    config.input, config.output = str(bad), str(tmp_path / "out2")
    with pytest.raises(ContractError, match=r"bad\.jsonl, field 'language': missing column"):
        annotate(config)


def test_engine_shards_carry_the_column(tmp_path, tiny_model):
    # the assembly every engine (transformers, vLLM, HTTP) goes through, fed made-up results
    rows = with_language(arithmetic_rows("item-", 0, 6))
    config = AnnotateConfig(input=write_jsonl(tmp_path / "items.jsonl", rows),
                            pool=write_jsonl(tmp_path / "pool.jsonl",
                                             arithmetic_rows("pool-", 100, 6, annotators=2)),
                            output=str(tmp_path / "out"), model=tiny_model, n_annotators=2,
                            k_shots=1, shard_size=4, mode="choice", progress=False,
                            carry=("language",))
    plan = prepare(config)
    assert plan.fingerprint["carry"] == ["language"]
    contract_only = AnnotateConfig(**{**vars(config), "carry": ("group",)})
    assert "carry" not in prepare(contract_only).fingerprint
    results = {}
    for group in range(len(plan.builder.groups)):
        for run in plan.builder.runs_for_group(plan.shard_items(0), group):
            results[(run["id"], int(run["run"]))] = RunResult(0.8, 1.0, "ok")
    job._write_shard(plan, 0, results)
    table, _ = validate_annotations(read_table(job.shard_path(config.output, 0)))
    assert table.column("language").to_pylist() == ["en", "fr", "de", "en"]


def test_a_new_carry_rewrites_finished_shards_without_judging_again(tmp_path, tiny_model):
    rows = with_language(arithmetic_rows("item-", 0, 6))
    settings = dict(input=write_jsonl(tmp_path / "items.jsonl", rows),
                    pool=write_jsonl(tmp_path / "pool.jsonl",
                                     arithmetic_rows("pool-", 100, 6, annotators=2)),
                    output=str(tmp_path / "out"), model=tiny_model, n_annotators=2, k_shots=1,
                    shard_size=4, mode="choice", progress=False)
    plan = prepare(AnnotateConfig(**settings))
    for shard in range(plan.n_shards):  # a finished run that carried nothing
        results = {(run["id"], int(run["run"])): RunResult(0.7, 1.0, "ok")
                   for group in range(len(plan.builder.groups))
                   for run in plan.builder.runs_for_group(plan.shard_items(shard), group)}
        job._write_shard(plan, shard, results)
    job.write_json_atomic({"fingerprint": plan.fingerprint}, f"{settings['output']}/{job.MANIFEST}")
    before = read_table(settings["output"])
    summary = annotate(AnnotateConfig(**settings, carry=("language",)))  # no engine: all done
    assert summary.shards_skipped == [0, 1] and summary.shards_written == []
    after, _ = validate_annotations(read_table(settings["output"]))
    assert after.column("language").to_pylist() == [LANGUAGES[i % 3] for i in range(6)]
    assert after.drop_columns(["language"]).equals(before)
    annotate(AnnotateConfig(**settings))  # and back: the contract's columns only
    assert read_table(settings["output"]).schema.names == ANNOTATION_SCHEMA.names
    with pytest.raises(ContractError, match="holds annotations of a different run"):
        annotate(AnnotateConfig(**settings, seed=1))  # other annotators: a different run
