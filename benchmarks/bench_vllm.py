"""Ray Data overhead of the vLLM engine: the same run rows through ``vllm_stage`` (ray.data.llm)
vs ``VllmEngine`` (vllm.LLM called directly), side by side in one run.

Engine start (tens of seconds on CPU, and very variable) is not what the pipeline adds, so both
sides are timed *after their first chunk of results*: the direct engine is called chunk by chunk
(``--chunk`` runs, the same requests per engine batch as the stage) and the first chunk is the
warm-up; the stage streams its results (``iter_batches``) and the clock starts when the first
batch arrives. Both run one engine batch at a time (``max_concurrent_batches=1``), so the
batching is identical and the ratio of seconds per run measures what Ray Data adds
(pre/post-processing tasks, object transfer, the likelihood pairing step).

    python benchmarks/bench_vllm.py                      # tiny random model, likelihood mode
    python benchmarks/bench_vllm.py --model smollm2 --items 8 --mode choice
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from types import SimpleNamespace

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def build_runs(model: str, mode: str, n_items: int, n: int, k: int) -> list[dict]:
    import pyarrow as pa

    from marc_ray.annotate.annotators import build_annotators, read_pool, run_layout
    from marc_ray.annotate.models import load_tokenizer
    from marc_ray.annotate.prompts import PromptBuilder, get_template

    pool = [{"id": f"pool-{i}", "instruction": f"What is {i} + 7?", "response_a": str(i + 7),
             "response_b": str(i + 9), "human_label": "a" if i % 2 else "b",
             "annotator": f"human-{i % n}"} for i in range(100, 100 + 2 * n * k)]
    items = [{"id": f"item-{i}", "instruction": f"What is {i} + 7?",
              "response_a": str(i + 7) if i % 2 else str(i + 9),
              "response_b": str(i + 9) if i % 2 else str(i + 7)} for i in range(n_items)]
    builder = PromptBuilder(get_template("default"),
                            build_annotators(read_pool(pa.Table.from_pylist(pool)), n, k),
                            run_layout(n, k), mode, ("A", "B"), load_tokenizer(model))
    return builder.runs(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="model spec; default: a tiny random model")
    parser.add_argument("--mode", default="likelihood", choices=["choice", "likelihood"])
    parser.add_argument("--items", type=int, default=6)
    parser.add_argument("--annotators", type=int, default=3)
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=16, help="runs per engine batch")
    args = parser.parse_args()

    import ray

    from marc_ray.annotate.models import make_tiny_model
    from marc_ray.annotate.vllm_engine import VllmEngine, vllm_stage

    model = args.model or make_tiny_model(tempfile.mkdtemp(prefix="bench-vllm-"), seed=0,
                                          hidden_size=256)
    runs = build_runs(model, args.mode, args.items, args.annotators, args.shots)
    print(f"{len(runs)} {args.mode} runs ({args.items} items, N={args.annotators}, "
          f"K={args.shots}), model {args.model or 'tiny (random, 2 layers)'}")

    per_run = 2 if args.mode == "likelihood" else 1  # engine requests per run
    chunks = [runs[i: i + args.chunk] for i in range(0, len(runs), args.chunk)]

    # the engine called directly, one chunk (= one engine batch) at a time
    begin = time.perf_counter()
    engine = VllmEngine(model, device="cpu").load()
    direct = engine.judge(chunks[0])  # warm-up: the first log-probability request compiles
    start = time.perf_counter()
    direct_startup = start - begin
    for chunk in chunks[1:]:
        direct += engine.judge(chunk)
    direct_time = time.perf_counter() - start
    direct_runs = len(runs) - len(chunks[0])
    engine.close()
    print(f"direct: {direct_runs} runs in {direct_time:.2f} s after the warm-up chunk", flush=True)

    # the same runs through ray.data.llm, streamed
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    config = SimpleNamespace(model=model, mode=args.mode, beta=5.0,
                             batch_size=args.chunk * per_run, num_workers=1, device="cpu",
                             dtype="auto", engine_options={"max_concurrent_batches": 1})
    dataset = ray.data.from_items(runs, override_num_blocks=len(chunks))
    rows, first_runs, first_at, begin = [], 0, None, time.perf_counter()
    for batch in vllm_stage(dataset, config).iter_batches(batch_size=None, batch_format="pandas"):
        if first_at is None:
            first_at, first_runs = time.perf_counter(), len(batch)
        rows.extend(batch.to_dict("records"))
    stage_end = time.perf_counter()
    ray.shutdown()
    assert len(rows) == len(runs)
    by_key = {(r["id"], int(r["run"])): r["p_first"] for r in rows}
    diff = max(abs(by_key[(run["id"], int(run["run"]))] - result.p_first)
               for run, result in zip(runs, direct))

    stage_runs = len(runs) - first_runs
    direct_rate = direct_time / direct_runs
    stage_rate = (stage_end - first_at) / stage_runs
    print(f"{'after the first chunk':28s}{'runs':>8s}{'seconds':>10s}{'ms/run':>10s}")
    print(f"{'vllm.LLM called directly':28s}{direct_runs:8d}{direct_time:10.2f}"
          f"{1000 * direct_rate:10.1f}")
    print(f"{'ray.data.llm (vllm_stage)':28s}{stage_runs:8d}{stage_end - first_at:10.2f}"
          f"{1000 * stage_rate:10.1f}")
    print(f"ratio (s/run, stage / direct): {stage_rate / direct_rate:.2f}")
    print(f"start-up to first results: direct {direct_startup:.1f} s, stage {first_at - begin:.1f} s "
          f"(engine start, first log-probability compile; stage: also its actors)")
    print(f"max |dP| stage vs direct: {diff:.1e}")


if __name__ == "__main__":
    main()
