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


# ---------------------------------------------------------------------------------------------
# Plan by default: a time without flags, GPUs per replica, the run folder's real state
# ---------------------------------------------------------------------------------------------

def test_plan_prints_a_time_without_flags_from_an_automatic_probe(tmp_path, tiny_model, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(_config(tmp_path, tiny_model).to_yaml())
    assert main(["plan", str(path), "--json"]) == 0
    judge = json.loads(capsys.readouterr().out)["judges"][0]
    assert judge["probe"]["items"] == 2  # the automatic probe: PROBE_ITEMS items
    assert judge["estimate"]["source"] == "probe of 2 items" and judge["estimate"]["engine_seconds"] > 0


def test_the_plan_inside_run_uses_the_prior_and_no_probe(tmp_path, tiny_model):
    from marc_ray.plan import model_parameters

    plan = build_plan(_config(tmp_path, tiny_model), probe_items=0)
    judge = plan["judges"][0]
    assert "probe" not in judge
    estimate = judge["estimate"]
    assert estimate["source"].startswith("prior: cpu") and estimate["device"] == "cpu"
    parameters = model_parameters(tiny_model)
    rate = 2 * 135e6 * 263 / (2 * parameters)  # EFFECTIVE_PREFILL_FLOPS["cpu"] / 2N
    assert estimate["throughput_per_worker"] == pytest.approx(rate)
    assert estimate["engine_seconds"] == pytest.approx(
        judge["tokens"]["prefill_with_reuse"]["total"] / rate, rel=1e-3, abs=0.1)


def test_model_parameters_from_config_and_name(tiny_model):
    from marc_ray.plan import model_parameters

    config = json.loads(open(f"{tiny_model}/config.json").read())
    h, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
    assert model_parameters(tiny_model) > vocab * h and model_parameters(tiny_model) > layers * 3 * h * h
    assert model_parameters("smollm2") == pytest.approx(135e6, rel=0.05)  # SmolLM2-135M
    assert model_parameters("meta-llama/Llama-3.1-70B-Instruct") == 70e9
    assert model_parameters("qwen2.5-0.5b") == 0.5e9 and model_parameters("judge") is None


def test_gpu_hours_count_every_gpu_of_a_replica(tmp_path, tiny_model):
    config = _config(tmp_path, tiny_model, engine="vllm", device="cuda", num_workers=2,
                     engine_options={"engine_kwargs": {"tensor_parallel_size": 4,
                                                       "pipeline_parallel_size": 2}})
    estimate = build_plan(config, probe_items=0, gpu="A100")["judges"][0]["estimate"]
    assert estimate["gpus_per_replica"] == 8 and estimate["device"] == "A100"
    assert estimate["gpu_hours"] == pytest.approx(estimate["engine_seconds"] * 2 * 8 / 3600, rel=1e-2)
    assert estimate["worker_hours"] == pytest.approx(estimate["engine_seconds"] * 2 / 3600, rel=1e-2)


def test_the_header_reads_the_run_folders_state(tmp_path, tiny_model, ray_local):
    config = _config(tmp_path, tiny_model)
    assert "does not exist yet" in format_plan(build_plan(config, probe_items=0))
    prepare_data(config)
    annotate(config.judges()[0])
    (tmp_path / "run" / "manifests").mkdir(exist_ok=True)
    (tmp_path / "run" / "manifests" / "prepare.json").write_text("{}")
    header = format_plan(build_plan(config, probe_items=0)).splitlines()[0]
    assert "nothing has run" not in header
    assert "stages with a manifest: prepare" in header and "3 of 3 annotate shards finished" in header


def test_sampled_token_counts_by_default_exact_behind_a_flag(tmp_path, tiny_model, capsys):
    config = _config(tmp_path, tiny_model).replace(data={"demo": {"n_items": 30}})
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    assert main(["plan", str(path), "--probe", "0", "--sample", "15", "--json"]) == 0
    sampled = json.loads(capsys.readouterr().out)["judges"][0]["tokens"]
    assert not sampled["exact"] and sampled["sampled_items"] == 15
    assert main(["plan", str(path), "--probe", "0", "--exact-tokens", "--json"]) == 0
    exact = json.loads(capsys.readouterr().out)["judges"][0]["tokens"]
    assert exact["exact"] and exact["sampled_items"] == 30
    # half the items, with the finite-population correction: the estimate is close (the 95%
    # interval itself is checked in test_token_counts_equal_the_engines_prefill)
    assert sampled["prefill_with_reuse"]["total"] == pytest.approx(exact["prefill_with_reuse"]["total"], rel=0.1)


def test_run_no_plan_skips_the_plan(tmp_path, tiny_model, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(_config(tmp_path, tiny_model).replace(run_dir=str(tmp_path / "run")).to_yaml())
    assert main(["run", str(path), "--plan", "--no-plan"]) == 0  # --plan wins: plan, then exit
    assert "total runs" in capsys.readouterr().out


def test_replay_run_table_rows_are_counted_for_json_lines(tmp_path):
    from marc_ray.plan import _count_rows

    runs = tmp_path / "runs.jsonl"
    runs.write_text('{"id": "a"}\n{"id": "b"}\n\n')
    assert _count_rows(str(runs)) == 2 and _count_rows(None) is None
