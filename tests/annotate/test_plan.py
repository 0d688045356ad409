"""`marc-ray plan`: the counts equal a real annotate run's on (reduced) demo data, and the token
counts equal what the engine itself prefills."""

from __future__ import annotations

import json

import pytest

from marc_ray.annotate.job import annotate, prepare
from marc_ray.cli import main
from marc_ray.config import PipelineConfig
from marc_ray.contracts import read_table
from marc_ray.pipeline import prepare_data
from marc_ray.plan import build_plan, format_plan, labels_needed, probe, token_counts


def _config(tmp_path, model, **annotate_changes) -> PipelineConfig:
    annotate = dict(engine="transformers", model=model, mode="likelihood", n_annotators=2,
                    k_shots=2, batch_size=8, num_workers=1, shard_size=4, progress=False)
    annotate.update(annotate_changes)
    return PipelineConfig.from_dict({
        "run_dir": str(tmp_path / "run"), "seed": 0, "data": {"demo": {"n_items": 10}},
        "annotate": annotate, "calibrate": {"alpha": 0.15, "delta": 0.1}}).validate()


def test_plan_counts_equal_a_real_run(tmp_path, tiny_model, ray_local):
    config = _config(tmp_path, tiny_model)
    plan = build_plan(config)
    judge = plan["judges"][0]
    assert not (tmp_path / "run").exists()  # planning ran nothing in the run folder
    assert judge["runs_per_item"] == 2 * 3 * 2 + 2 and judge["items"] == plan["items"] == 10
    prepare_data(config)
    summary = annotate(config.judges()[0])
    table = read_table(summary.output)
    assert summary.n_runs == judge["total_runs"]  # every run the job made, counted once
    statuses = sum(len(s) for s in table.column("status").to_pylist()) + 2 * table.num_rows
    assert statuses == judge["total_runs"] and summary.n_shards == judge["shards"]
    assert "total runs: 140 in 3 shards" in format_plan(plan)


@pytest.mark.parametrize("mode", ["likelihood", "choice"])
def test_token_counts_equal_the_engines_prefill(tmp_path, tiny_model, mode):
    config = _config(tmp_path, tiny_model, mode=mode, shard_size=100)
    prepare_data(config)
    job_plan = prepare(config.judges()[0])
    job_plan.comparisons = job_plan.comparisons.slice(0, 3)
    from marc_ray.annotate.models import load_tokenizer

    counted = token_counts(job_plan, load_tokenizer(tiny_model))
    measured = probe(job_plan, 3)  # the transformers engine counts the tokens it runs
    assert counted["exact"] and counted["prefill_with_reuse"]["total"] == measured["prefill_tokens"]
    sampled = token_counts(job_plan, load_tokenizer(tiny_model), sample=2, seed=1)
    low, high = sampled["prefill_with_reuse"]["ci95"]
    assert not sampled["exact"] and low <= sampled["prefill_with_reuse"]["total"] <= high


def test_labels_needed_and_the_cli(tmp_path, tiny_model, capsys):
    need = labels_needed(0.1, 0.1, 0.0, 1.0, 100)
    assert need["accepted_min_zero_errors"] == need["labels_needed"] == 22  # ln 0.1 / ln 0.9
    assert labels_needed(0.1, 0.1, 0.2, 0.5, 100)["labels_needed"] == float("inf")
    config = _config(tmp_path, tiny_model)
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    assert main(["plan", str(path), "--throughput", "100", "--throughput-unit", "runs", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["judges"][0]["estimate"]["engine_seconds"] == pytest.approx(140 / 100, abs=0.1)
    assert main(["plan", str(path), "--expected-coverage", "2"]) == 2


def test_run_plan_prints_and_exits(tmp_path, tiny_model, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(_config(tmp_path, tiny_model).to_yaml())
    assert main(["run", str(path), "--plan"]) == 0
    assert "total runs: 140 in 3 shards" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()  # nothing ran
