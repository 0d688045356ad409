"""The annotate driver never limits a cluster: its cost per run result, against 5,000 runs/s
(the on-paper rate of 100 GPU workers x ~50 runs/s each).

    PYTHONPATH=$PWD python benchmarks/bench_driver.py [--items 2000] [--ray-items 200]

1. *Bookkeeping and shard writing*: the job's own ``ResultCollector`` (what the driver runs on
   every result batch: keyed by (id, run), exactly once, each shard assembled and written
   atomically to Parquet when complete) fed result blocks of the size Ray Data delivers
   (``RESULT_BLOCK_BYTES``), N = K = 5 (312 runs per item). Rate = runs / driver seconds.
2. *Transport too*: the whole job on a local Ray cluster with an engine that answers instantly
   (so engines cost nothing): runs / driver CPU seconds (the driver's own process time while
   results stream in) and runs / wall seconds (bounded here by 2 shared cores, which also expand
   the prompts).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import pyarrow as pa

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from marc_ray.annotate import job  # noqa: E402
from marc_ray.annotate.config import AnnotateConfig  # noqa: E402
from marc_ray.demo import DemoSpec, write_demo  # noqa: E402

TARGET = 5000.0


def _config(folder: str, n_items: int, shard_size: int) -> AnnotateConfig:
    comparisons, pool = write_demo(folder, DemoSpec(n_items=n_items, seed=0))
    return AnnotateConfig(input=comparisons, pool=pool, output=os.path.join(folder, "out"),
                          engine="http", model="instant", n_annotators=5, k_shots=5,
                          shard_size=shard_size, progress=False, num_workers=1).validate()


def bookkeeping(folder: str, n_items: int) -> dict:
    plan = job.prepare(_config(folder, n_items, 100))
    os.makedirs(plan.config.output, exist_ok=True)
    pending = list(range(plan.n_shards))
    rows_per_block = max(1, job.RESULT_BLOCK_BYTES // 40)  # ~40 bytes per result row
    blocks = []
    for shard in pending:
        rows = [(item["id"], run) for group in range(len(plan.builder.groups))
                for item in plan.shard_items(shard) for run, _ in plan.builder.groups[group][2]]
        for lo in range(0, len(rows), rows_per_block):
            part = rows[lo:lo + rows_per_block]
            blocks.append(pa.table({"id": [r[0] for r in part], "run": [r[1] for r in part],
                                    "p_first": [0.5] * len(part), "label_mass": [1.0] * len(part),
                                    "status": ["ok"] * len(part)}))
    collector = job.ResultCollector(plan, pending)
    start = time.perf_counter()
    written = 0
    for block in blocks:
        written += len(collector.add(block)[1])
    seconds = time.perf_counter() - start
    collector.check_complete()
    return {"runs": collector.received, "shards": written, "seconds": seconds,
            "runs_per_s": collector.received / seconds, "rows_per_block": rows_per_block}


class Instant:
    """An engine that answers at once: P(first better) = 0.5 for every run."""

    def __call__(self, batch: dict) -> dict:
        n = len(batch["id"])
        return {"id": batch["id"], "run": batch["run"], "p_first": [0.5] * n,
                "label_mass": [1.0] * n, "status": ["ok"] * n}


def through_ray(folder: str, n_items: int) -> dict:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    config = _config(folder, n_items, 25)
    job.engine_stage = lambda ds, cfg: ds.map_batches(
        Instant, compute=ray.data.ActorPoolStrategy(size=1), batch_size=256, num_cpus=0)
    cpu, start = time.process_time(), time.perf_counter()
    summary = job.annotate(config)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - start
    ray.shutdown()
    return {"runs": summary.n_runs, "wall_s": wall, "driver_cpu_s": cpu,
            "runs_per_driver_cpu_s": summary.n_runs / cpu, "runs_per_wall_s": summary.n_runs / wall}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--ray-items", type=int, default=200)
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()}; {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as folder:
        book = bookkeeping(os.path.join(folder, "book"), args.items)
        print(f"bookkeeping + shard writing: {book['runs']:,} runs, {book['shards']} shards in "
              f"{book['seconds']:.2f} s = {book['runs_per_s']:,.0f} runs/s "
              f"({book['rows_per_block']} rows per block); ratio vs {TARGET:,.0f} runs/s: "
              f"{book['runs_per_s'] / TARGET:.1f}")
        if args.ray_items:
            ray_result = through_ray(os.path.join(folder, "ray"), args.ray_items)
            print(f"whole job on Ray, instant engine: {ray_result['runs']:,} runs in "
                  f"{ray_result['wall_s']:.1f} s wall ({ray_result['runs_per_wall_s']:,.0f} runs/s), driver "
                  f"CPU {ray_result['driver_cpu_s']:.1f} s = {ray_result['runs_per_driver_cpu_s']:,.0f} runs "
                  f"per driver CPU second; ratio vs {TARGET:,.0f}: "
                  f"{ray_result['runs_per_driver_cpu_s'] / TARGET:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
