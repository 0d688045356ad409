"""Ray Data overhead of the vLLM engine: the same run rows through ``vllm_stage`` (ray.data.llm)
vs ``VllmEngine`` (vllm.LLM called directly), side by side in one run.

Engine start and the first log-probability compile are not what the pipeline adds, so each
side is timed on a 1-run warm-up and on the full set, and the *marginal* time of the remaining
runs is compared: ratio = (stage(all) - stage(1)) / (direct(all) - direct(1)). Each stage
call starts its own engine actor (that is how ray.data.llm works), the direct engine starts once.

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
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    import ray

    from marc_ray.annotate.models import make_tiny_model
    from marc_ray.annotate.vllm_engine import VllmEngine, vllm_stage

    model = args.model or make_tiny_model(tempfile.mkdtemp(prefix="bench-vllm-"), seed=0,
                                          hidden_size=256)
    runs = build_runs(model, args.mode, args.items, args.annotators, args.shots)
    print(f"{len(runs)} {args.mode} runs ({args.items} items, N={args.annotators}, "
          f"K={args.shots}), model {args.model or 'tiny (random, 2 layers)'}")

    # the engine called directly
    engine = VllmEngine(model, device="cpu").load()
    start = time.perf_counter()
    engine.judge(runs[:1])
    direct_one = time.perf_counter() - start
    start = time.perf_counter()
    direct = engine.judge(runs)
    direct_all = time.perf_counter() - start
    engine.close()

    # the same runs through ray.data.llm
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    config = SimpleNamespace(model=model, beta=5.0, batch_size=args.batch_size, num_workers=1,
                             device="cpu", dtype="auto", engine_options={})
    timings = {}
    for name, subset in (("one", runs[:1]), ("all", runs)):
        start = time.perf_counter()
        rows = vllm_stage(ray.data.from_items(subset, override_num_blocks=2), config).take_all()
        timings[name] = time.perf_counter() - start
    ray.shutdown()
    assert len(rows) == len(runs)
    by_key = {(r["id"], int(r["run"])): r["p_first"] for r in rows}
    diff = max(abs(by_key[(run["id"], int(run["run"]))] - result.p_first)
               for run, result in zip(runs, direct))

    marginal_direct = direct_all - direct_one
    marginal_stage = timings["all"] - timings["one"]
    print(f"{'':28s}{'1 run':>10s}{'all runs':>10s}{'marginal':>10s}")
    print(f"{'vllm.LLM called directly':28s}{direct_one:10.2f}{direct_all:10.2f}"
          f"{marginal_direct:10.2f}")
    print(f"{'ray.data.llm (vllm_stage)':28s}{timings['one']:10.2f}{timings['all']:10.2f}"
          f"{marginal_stage:10.2f}")
    print(f"ratio (marginal, stage / direct): {marginal_stage / marginal_direct:.2f}; "
          f"stage start-up (1-run call, includes engine start): {timings['one']:.1f} s; "
          f"max |dP| stage vs direct: {diff:.1e}")


if __name__ == "__main__":
    main()
