"""Benchmark (b): the Ray Data pipeline vs the same engine called directly, same prompts.

    PYTHONPATH=. python benchmarks/bench_ray_overhead.py [--items 16] [--n 2] [--k 2]
        [--model smollm2] [--mode likelihood]

Both sides start from the same config and files (PandaLM items, pool from other PandaLM items)
and do everything except ``ray.init`` (timed apart): read and validate the data, build the
prompts, load the model, judge every run (transformers engine, one thread, prefix reuse),
assemble the annotation rows and write Parquet. *Direct*: ``prepare`` + ``TransformersEngine``
in this process. *Pipeline*: ``annotate(config)`` with one engine actor (Ray Data flat_map +
map_batches + streaming shard writes). Prints both wall times and their ratio (target <= 1.15).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def direct(config) -> float:
    from marc_ray.annotate.assemble import annotation_row, annotation_table, carried_columns
    from marc_ray.annotate.job import prepare, shard_path
    from marc_ray.annotate.transformers_engine import TransformersEngine
    from marc_ray.contracts import write_table_atomic

    start = time.perf_counter()
    plan = prepare(config)
    engine = TransformersEngine(config.model, batch_size=config.batch_size, beta=config.beta,
                                num_threads=1).load()
    runs = plan.builder.runs(plan.items)
    results = engine.judge(runs)
    by_item: dict = {}
    for run, result in zip(runs, results):
        by_item.setdefault(run["id"], {})[run["run"]] = result
    rows = [annotation_row(item["id"], plan.judge, plan.builder.layout, by_item[item["id"]],
                           carried_columns(item)) for item in plan.items]
    write_table_atomic(annotation_table(rows, plan.builder.layout), shard_path(config.output, 0))
    return time.perf_counter() - start


def pipeline(config) -> float:
    from marc_ray.annotate.job import annotate

    start = time.perf_counter()
    annotate(config)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--mode", default="likelihood", choices=["choice", "likelihood"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import ray

    from bench_prefix_reuse import write_inputs
    from marc_ray.annotate.config import AnnotateConfig

    with tempfile.TemporaryDirectory() as folder:
        files = write_inputs(folder, args.items, args.seed)

        def config(name):
            return AnnotateConfig(**files, output=os.path.join(folder, name), model=args.model,
                                  mode=args.mode, n_annotators=args.n, k_shots=args.k,
                                  seed=args.seed, shard_size=args.items, num_workers=1,
                                  progress=False)
        direct_seconds = direct(config("direct"))
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        init_seconds = time.perf_counter() - start
        pipeline_seconds = pipeline(config("pipeline"))
        ray.shutdown()
    runs = args.items * (args.n * (2 ** args.k - 1) * 2 + 2)
    print(f"Ray Data overhead: {args.items} PandaLM items x {runs // args.items} runs, N={args.n} "
          f"K={args.k}, {args.mode} mode, model {args.model}, one engine worker")
    print(f"{'direct (engine in process)':>30}: {direct_seconds:8.1f} s")
    print(f"{'pipeline (Ray Data job)':>30}: {pipeline_seconds:8.1f} s   (+ ray.init {init_seconds:.1f} s)")
    print(f"{'ratio pipeline / direct':>30}: {pipeline_seconds / direct_seconds:8.2f}")


if __name__ == "__main__":
    main()
