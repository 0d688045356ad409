"""Benchmark (c): items per second of the offline default judge on 2 CPU cores.

    PYTHONPATH=. python benchmarks/bench_offline_throughput.py [--items 4] [--n 5] [--k 5]
        [--workers 2]

The full annotate job (Ray Data, transformers engine, SmolLM2-135M-Instruct in likelihood
mode, prefix reuse, one thread per worker) on PandaLM items, with MARC's default
N = 5 annotators x K = 5 shots (all 31 subsets, both orders, + zero-shot: 312 runs per item)
unless told otherwise. Prints the wall time (``ray.init`` excluded; model loading included)
and items per second, plus the prefill work per item from a direct engine pass on one item.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=4)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import ray

    from bench_prefix_reuse import write_inputs
    from marc_ray.annotate.config import AnnotateConfig
    from marc_ray.annotate.job import annotate

    with tempfile.TemporaryDirectory() as folder:
        files = write_inputs(folder, args.items, args.seed)
        config = AnnotateConfig(**files, output=os.path.join(folder, "out"), model="smollm2",
                                mode="likelihood", n_annotators=args.n, k_shots=args.k,
                                seed=args.seed, num_workers=args.workers,
                                shard_size=max(1, args.items // args.workers), progress=False)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        start = time.perf_counter()
        summary = annotate(config)
        seconds = time.perf_counter() - start
        ray.shutdown()
    runs = summary.n_runs
    print(f"offline throughput: SmolLM2-135M-Instruct, likelihood mode, N={args.n} K={args.k} "
          f"({runs // args.items} runs/item), {args.items} PandaLM items, {args.workers} workers "
          f"x 1 thread, 2 CPU cores")
    print(f"wall time {seconds:.1f} s (model loading included) -> {args.items / seconds:.4f} items/s, "
          f"{runs / seconds:.1f} runs/s")


if __name__ == "__main__":
    main()
