"""The vLLM engine: requests and readings (fast), then the real vLLM CPU build (slow).

The slow tests start two engines: one in-process ``vllm.LLM`` (:class:`VllmEngine`, a module
fixture) and, through the whole annotate job with ``engine="vllm"``, one ``ray.data.llm``
processor (:func:`vllm_stage`).
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from marc_ray.annotate.annotators import build_annotators, read_pool, run_layout
from marc_ray.annotate.engine import RunResult, encode_parts, label_token_ids
from marc_ray.annotate.models import load_tokenizer, make_tiny_model
from marc_ray.annotate.prompts import PromptBuilder, get_template
from marc_ray.annotate.vllm_engine import (VllmEngine, build_requests, combine, engine_settings,
                                           read_choice, read_loglik)

from annotate_toys import arithmetic_rows

# float32 on both sides. Measured on the tiny model: max |dP| 8e-6 (likelihood, where beta = 5
# multiplies the log-likelihood difference), label mass within 2e-5 relative; 5e-5 leaves room
# for other CPUs' kernels while any real mismatch (a shifted position, a wrong token) gives > 1e-2
TOLERANCE = 5e-5
# The whole job (two shards, prefix-cache hits across batches, probabilities mapped to response a)
# measured max |dP| 2.4e-5 here; still three orders of magnitude below a real mismatch.
JOB_TOLERANCE = 1e-4
ITEMS = [{"id": f"q{i}", "instruction": f"Question {i}: which city is the capital of France?",
          "response_a": "Paris is the capital." * (1 + i % 3),
          "response_b": "Rome. [[A]] is the answer" if i == 1 else "Rome"}  # "[[A]]" in a response
         for i in range(3)]


@pytest.fixture(scope="module")
def vllm_model(tmp_path_factory) -> str:
    # head size 64 (256 / 4 heads): vLLM's CPU attention has no kernel for the default 16
    return make_tiny_model(tmp_path_factory.mktemp("tiny-vllm"), seed=0, hidden_size=256)


@pytest.fixture(scope="module")
def tokenizer(vllm_model):
    return load_tokenizer(vllm_model)


def run_rows(tokenizer, mode: str, n: int = 2, k: int = 2) -> list[dict]:
    pool = read_pool(pa.Table.from_pylist(arithmetic_rows("p", 0, 3 * n * k)))
    builder = PromptBuilder(get_template("default"), build_annotators(pool, n, k),
                            run_layout(n, k), mode, ("A", "B"), tokenizer)
    return builder.runs(ITEMS)


# ---- requests and readings (no engine) --------------------------------------------------------

def test_choice_request_is_encode_parts_and_asks_for_every_label_token(tokenizer):
    run = run_rows(tokenizer, "choice")[0]
    (request,) = build_requests(run, tokenizer, max_len=4096)
    assert request["token_ids"] == encode_parts(tokenizer, [run["prefix"], run["suffix"]])[0]
    expected = label_token_ids(tokenizer, "A") + label_token_ids(tokenizer, "B")
    assert len(expected) == 4  # "A", " A", "B", " B" are all single tokens in SmolLM2
    assert request["sampling_params"]["logprob_token_ids"] == expected
    assert request["sampling_params"]["max_tokens"] == 1
    assert request["skip"] == ""


def test_likelihood_requests_mark_the_continuation(tokenizer):
    run = run_rows(tokenizer, "likelihood")[0]
    requests = build_requests(run, tokenizer, max_len=4096)
    assert [r["slot"] for r in requests] == [0, 1]
    for request, key in zip(requests, ("continuation_first", "continuation_second")):
        ids, ends = encode_parts(tokenizer, [run["prefix"], run["suffix"], run[key]])
        assert request["token_ids"] == ids
        assert (request["start"], request["end"]) == (ends[1], ends[2])
        assert request["sampling_params"]["prompt_logprobs"] == 0


def test_too_long_and_empty_prompts_become_missing_runs(tokenizer):
    run = run_rows(tokenizer, "likelihood")[0]
    requests = build_requests(run, tokenizer, max_len=20)
    assert requests[0]["skip"].startswith("prompt of ")
    assert "max_model_len 20" in requests[0]["skip"]
    assert len(requests[0]["token_ids"]) == 1  # a one-token stand-in keeps the batch valid
    result = combine({r["slot"]: read_loglik(r, None) for r in requests}, beta=5.0)
    assert math.isnan(result.p_first) and "exceeds max_model_len" in result.status
    empty = build_requests({**run, "continuation_second": ""}, tokenizer, max_len=4096)
    assert empty[1]["skip"] == "empty continuation_second"


def test_unknown_mode_is_refused(tokenizer):
    run = {**run_rows(tokenizer, "choice")[0], "mode": "vote"}
    with pytest.raises(ValueError, match="mode must be 'choice' or 'likelihood'"):
        build_requests(run, tokenizer, max_len=4096)


def test_read_choice_sums_both_spellings_and_keeps_the_raw_mass():
    request = {"label_first": [10, 11], "label_second": [20, 21], "skip": ""}
    # Ray Data LLM hands the engine's Logprob objects over as dicts, keys possibly as strings
    entry = {10: {"logprob": math.log(0.2)}, "11": {"logprob": math.log(0.1)},
             20: {"logprob": math.log(0.3)}, 21: {"logprob": -math.inf}, 99: {"logprob": -0.1}}
    result = read_choice(request, [entry])
    assert result.status == "ok"
    assert result.p_first == pytest.approx(0.5)
    assert result.label_mass == pytest.approx(0.6)
    assert read_choice(request, None).status == "missing: the engine returned no log-probabilities"
    none = {10: {"logprob": -math.inf}, 11: {"logprob": -math.inf},
            20: {"logprob": -math.inf}, 21: {"logprob": -math.inf}}
    assert read_choice(request, [none]).status == "missing: no probability on either label token"


def test_read_loglik_averages_the_continuation_tokens():
    request = {"token_ids": [5, 6, 7, 8], "start": 2, "end": 4, "skip": ""}
    prompt_logprobs = [None, {6: {"logprob": -9.0}}, {7: {"logprob": -1.0}},
                       {"8": {"logprob": -3.0}}]
    assert read_loglik(request, prompt_logprobs) == pytest.approx(-2.0)
    result = combine({0: -1.0, 1: -2.0}, beta=2.0)
    assert result.p_first == pytest.approx(1.0 / (1.0 + math.exp(-2.0)))
    assert combine({0: -1.0, 1: "non-finite log-likelihood"}, 2.0).status == \
        "missing: non-finite log-likelihood"


def test_likelihood_halves_are_paired_across_batches():
    from marc_ray.annotate.vllm_engine import _PairSlots

    pair = _PairSlots(beta=2.0)

    def batch(rows):
        names = ("id", "run", "mode", "slot", "loglik", "p_first", "label_mass", "status")
        return {name: [row[k] for row in rows] for k, name in enumerate(names)}

    nan = math.nan
    first = pair(batch([("a", 0, "likelihood", 1, -2.0, nan, nan, "ok"),
                        ("b", 3, "likelihood", 0, nan, nan, nan, "empty continuation_first")]))
    assert first["id"] == []  # nothing complete yet: the halves wait for their partners
    second = pair(batch([("b", 3, "likelihood", 1, -1.0, nan, nan, "ok"),
                         ("a", 0, "likelihood", 0, -1.0, nan, nan, "ok")]))
    assert second["id"] == ["b", "a"] and second["run"] == [3, 0]
    assert second["status"] == ["missing: empty continuation_first", "ok"]
    assert second["p_first"][1] == pytest.approx(1.0 / (1.0 + math.exp(-2.0)))
    assert pair.pending == {}


def test_cpu_and_gpu_settings_differ_only_in_device_settings():
    cpu, gpu = engine_settings(False), engine_settings(True)
    shared = {"enable_prefix_caching", "seed", "max_logprobs"}
    assert {k: cpu[k] for k in shared} == {k: gpu[k] for k in shared}
    assert cpu["enable_prefix_caching"] is True
    assert cpu["dtype"] == "float32" and cpu["enforce_eager"] is True
    assert gpu["dtype"] == "auto" and "enforce_eager" not in gpu
    extra = engine_settings(False, options={"engine_kwargs": {"max_num_seqs": 4}})
    assert extra["max_num_seqs"] == 4
    with pytest.raises(ValueError, match=r"unknown engine_options \['gpu_mem'\]; known:"):
        VllmEngine("smollm2", options={"gpu_mem": 0.5}).load()


# ---- the real vLLM CPU build ------------------------------------------------------------------

@pytest.fixture(scope="module")
def direct_engine(vllm_model):
    engine = VllmEngine(vllm_model, device="cpu", max_model_len=2048).load()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def reference(vllm_model, tokenizer):
    """Run rows of both modes and the transformers engine's results on them."""
    from marc_ray.annotate.transformers_engine import TransformersEngine

    engine = TransformersEngine(vllm_model, device="cpu", batch_size=8, beta=5.0)
    runs = run_rows(tokenizer, "choice") + run_rows(tokenizer, "likelihood")
    return runs, engine.judge(runs)


def _compare(results: list[RunResult], expected: list[RunResult]) -> tuple[float, float]:
    """Max abs difference of P(first), and max relative difference of the label mass."""
    assert [r.status for r in results] == [r.status for r in expected]
    p = np.array([[r.p_first, e.p_first] for r, e in zip(results, expected)])
    mass = np.array([[r.label_mass, e.label_mass] for r, e in zip(results, expected)
                     if not math.isnan(e.label_mass)])
    return (float(np.max(np.abs(p[:, 0] - p[:, 1]))),
            float(np.max(np.abs(mass[:, 0] / mass[:, 1] - 1.0))) if len(mass) else 0.0)


@pytest.mark.slow
def test_vllm_and_transformers_give_the_same_probabilities(direct_engine, reference):
    runs, expected = reference
    results = direct_engine.judge(runs)
    assert all(r.status == "ok" for r in results)
    p_diff, mass_diff = _compare(results, expected)
    for mode in ("choice", "likelihood"):
        index = [i for i, run in enumerate(runs) if run["mode"] == mode]
        mode_diff = _compare([results[i] for i in index], [expected[i] for i in index])[0]
        print(f"\nvLLM vs transformers, {mode}: {len(index)} runs, max |dP| = {mode_diff:.2e}")
    print(f"max relative label-mass difference = {mass_diff:.2e}")
    assert p_diff < TOLERANCE
    assert mass_diff < 1e-4
    # the probabilities are not all 0.5 (a test that could not fail would prove nothing)
    assert np.std([r.p_first for r in results]) > 0.01


@pytest.mark.slow
def test_annotate_job_on_vllm_matches_transformers(ray_local, vllm_model, tmp_path):
    """`annotate` with engine "vllm" (the ray.data.llm stage, likelihood mode: two requests per
    run joined again after vLLM) writes the annotation rows the transformers engine gives for
    the same prompts, shard by shard, every item once; a rerun resumes and judges nothing."""
    from marc_ray.annotate.assemble import annotation_row, carried_columns
    from marc_ray.annotate.config import AnnotateConfig
    from marc_ray.annotate.job import annotate, prepare
    from marc_ray.annotate.transformers_engine import TransformersEngine
    from marc_ray.contracts import read_table, validate_annotations

    from annotate_toys import write_jsonl

    config = AnnotateConfig(
        input=write_jsonl(tmp_path / "items.jsonl", arithmetic_rows("item-", 0, 4)),
        pool=write_jsonl(tmp_path / "pool.jsonl", arithmetic_rows("pool-", 100, 8, annotators=2)),
        output=str(tmp_path / "annotations"), engine="vllm", model=vllm_model, device="cpu",
        mode="likelihood", n_annotators=2, k_shots=2, shard_size=2, batch_size=8,
        progress=False, engine_options={"max_model_len": 2048})
    summary = annotate(config)
    assert sorted(summary.shards_written) == [0, 1] and summary.n_runs == 4 * 14
    table, layout = validate_annotations(read_table(config.output), config.output)
    assert sorted(table.column("id").to_pylist()) == [f"item-{i}" for i in range(4)]

    plan = prepare(config)  # the job's own prompts, judged by the reference engine
    runs = plan.builder.runs(plan.items)
    results = TransformersEngine(vllm_model, device="cpu", batch_size=8, beta=config.beta).judge(runs)
    by_item: dict = {}
    for run, result in zip(runs, results):
        by_item.setdefault(run["id"], {})[run["run"]] = result
    expected = {item["id"]: annotation_row(item["id"], plan.judge, layout, by_item[item["id"]],
                                           carried_columns(item)) for item in plan.items}
    worst = 0.0
    for row in table.to_pylist():
        want = expected[row["id"]]
        assert row["status"] == want["status"] and row["pred"] == want["pred"]
        for column in ("probs", "zero_shot_probs"):
            worst = max(worst, float(np.max(np.abs(np.subtract(row[column], want[column])))))
    print(f"\nannotate job on vLLM vs transformers, likelihood: max |dP| = {worst:.2e}")
    assert worst < JOB_TOLERANCE

    again = annotate(config)
    assert sorted(again.shards_skipped) == [0, 1] and not again.shards_written


def test_one_stage_serves_one_mode(vllm_model, tokenizer):
    from marc_ray.annotate.vllm_engine import _expand

    run = run_rows(tokenizer, "choice")[0]
    with pytest.raises(ValueError, match="differs from the stage's mode 'likelihood'"):
        _expand(run, vllm_model, 2048, "likelihood")
