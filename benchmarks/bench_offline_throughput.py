"""Benchmark (c): items per second of the offline default judge on 2 CPU cores.

    PYTHONPATH=. python benchmarks/bench_offline_throughput.py [--items 16] [--n 2] [--k 2]
        [--workers 2] [--shard-size 8]

The full annotate job (Ray Data, transformers engine, SmolLM2-135M-Instruct in likelihood
mode, prefix reuse, one thread per worker) on PandaLM items. The default is a small layout
(N = 2 x K = 2: 14 runs per item) so that it finishes in minutes on 2 cores; MARC's
N = 5 x K = 5 (312 runs per item) is ``--n 5 --k 5``, and the printed runs/s gives its
items/s (a run's cost grows only mildly with K: the prefix is prefilled once per shard).
Prints the wall time (``ray.init`` excluded; model loading included), items/s and runs/s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=8)
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
                                shard_size=args.shard_size, progress=False)
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
    print(f"at this run rate, MARC's N=5 x K=5 layout (312 runs/item) would give "
          f"{runs / seconds / 312:.4f} items/s")


if __name__ == "__main__":
    main()
