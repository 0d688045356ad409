"""The annotate job's output on an object store (a moto S3 server on localhost): shards and
manifest through pyarrow.fs, a shard finished only once its marker is there, resume skips
exactly the finished shards. No engine and no Ray: the driver's collector gets the results."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from marc_ray.annotate import job
from marc_ray.annotate.config import AnnotateConfig
from marc_ray.contracts import read_table, validate_annotations
from marc_ray.contracts.io import read_text, resolve

from annotate_toys import arithmetic_rows, write_jsonl


@pytest.fixture
def s3_plan(s3_env, tmp_path):
    bucket = f"annotate-{tmp_path.name.lower().replace('_', '-')}"[:60]
    resolve(f"s3://{bucket}?{s3_env}")[0].create_dir(bucket)
    config = AnnotateConfig(
        input=write_jsonl(tmp_path / "items.jsonl", arithmetic_rows("item-", 0, 10)),
        pool=write_jsonl(tmp_path / "pool.jsonl", arithmetic_rows("pool-", 100, 12, annotators=3)),
        output=f"s3://{bucket}/run/annotate/judge?{s3_env}", engine="http", model="judge",
        n_annotators=2, k_shots=1, shard_size=4, mode="choice", progress=False)
    return job.prepare(config)


def engine_results(plan, shards) -> pa.Table:
    """Every run of the shards' items, as the engine stage would return them."""
    rows = [run for shard in shards for group in range(len(plan.builder.groups))
            for run in plan.builder.runs_for_group(plan.shard_items(shard), group)]
    return pa.table({"id": [r["id"] for r in rows], "run": [int(r["run"]) for r in rows],
                     "p_first": [0.75] * len(rows), "label_mass": [0.9] * len(rows),
                     "status": ["ok"] * len(rows)})


def test_shards_and_markers_on_s3_and_resume_skips_finished_shards(s3_plan):
    plan, output = s3_plan, s3_plan.config.output
    assert plan.n_shards == 3 and job.check_output(plan) == []
    collector = job.ResultCollector(plan, [0, 1, 2])
    results = engine_results(plan, [0, 1])
    collector.add(results)
    collector.add(results)  # a batch delivered twice counts once
    assert job.check_output(plan) == [0, 1]

    filesystem, root = resolve(output)
    names = {info.path[len(root) + 1:] for info in filesystem.get_file_info(
        pafs.FileSelector(root, recursive=True)) if info.type == pafs.FileType.File}
    assert {"part-00000.parquet", "part-00001.parquet", "_done/part-00000.json"} <= names
    assert json.loads(read_text(job.marker_path(output, 1))) == {"shard": 1, "rows": 4}
    assert not any(".tmp-" in name for name in names)  # one put per file, no temporaries

    # a shard object without its marker (an upload that never finished its bookkeeping) is
    # not finished: resume judges it again
    with filesystem.open_output_stream(f"{root}/part-00002.parquet") as stream:
        stream.write(b"PAR1 truncated")
    assert job.check_output(plan) == [0, 1]
    filesystem.delete_file(f"{root}/_done/part-00001.json")
    assert job.check_output(plan) == [0]

    rest = job.ResultCollector(plan, [1, 2])
    rest.add(engine_results(plan, [1, 2]))
    rest.check_complete()
    assert job.check_output(plan) == [0, 1, 2]
    table, layout = validate_annotations(read_table(output), output)  # markers are not read
    assert sorted(table.column("id").to_pylist()) == sorted(f"item-{i}" for i in range(10))
    assert layout.shape == (2, 1, 2)


def test_a_different_runs_manifest_on_s3_is_refused(s3_plan):
    from marc_ray.contracts import ContractError, write_json_atomic
    from marc_ray.contracts.io import join

    plan = s3_plan
    write_json_atomic({"fingerprint": {**plan.fingerprint, "seed": 99}},
                      join(plan.config.output, job.MANIFEST))
    with pytest.raises(ContractError, match=r"different run \(differs in \['seed'\]\)"):
        job.check_output(plan)


@pytest.mark.slow
def test_a_real_engine_job_writes_to_s3_and_resumes(ray_local, s3_env, tmp_path, tiny_model):
    # the whole job (Ray Data over a transformers engine actor) with its output in the bucket:
    # the engine actors compute, the driver writes the shards; a rerun judges nothing again
    bucket = f"annotate-real-{tmp_path.name.lower().replace('_', '-')}"[:60]
    resolve(f"s3://{bucket}?{s3_env}")[0].create_dir(bucket)
    config = AnnotateConfig(
        input=write_jsonl(tmp_path / "items.jsonl", arithmetic_rows("item-", 0, 8)),
        pool=write_jsonl(tmp_path / "pool.jsonl", arithmetic_rows("pool-", 100, 12, annotators=3)),
        output=f"s3://{bucket}/annotate/tiny?{s3_env}", model=tiny_model, n_annotators=2,
        k_shots=1, shard_size=4, batch_size=4, mode="choice", progress=False)
    summary = job.annotate(config)
    assert sorted(summary.shards_written) == [0, 1]
    table, layout = validate_annotations(read_table(config.output), config.output)
    assert sorted(table.column("id").to_pylist()) == [f"item-{i}" for i in range(8)]
    assert layout.shape == (2, 1, 2)
    again = job.annotate(config)
    assert again.shards_written == [] and again.shards_skipped == [0, 1]
