"""The replay's item lookup per run-table batch: ``pc.index_in`` on every batch, against
``annotate.run_table.TextIndex`` (the item ids hashed once), side by side.

The replay reads its run table in batches and maps each batch's ids to item positions. With
``pc.index_in`` the whole id set is hashed again for every batch, so the cost of a batch grows
with the number of items and the replay's total with items × batches: quadratic. This times both
lookups on the same batches (a batch's ids dictionary-encoded, as the replay reads them: the
ids of consecutive items, ``--runs`` runs each), in CPU time, and prints the cost per batch, the
total over the run table's batches at that size, and the ratio.

    PYTHONPATH=$PWD python benchmarks/bench_replay_lookup.py --items 100000 1000000
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pyarrow as pa

from marc_ray.annotate.run_table import TextIndex, codes

BATCH_ROWS = 1 << 18  # the replay's run-table batch (run_table.RunBatches)


def batches(ids: pa.Array, runs_per_item: int, n_batches: int, seed: int) -> list[pa.Array]:
    """``n_batches`` batches from random places of a run table ordered by item."""
    rng = np.random.default_rng(seed)
    items_per_batch = -(-BATCH_ROWS // runs_per_item)
    out = []
    for start in rng.integers(0, len(ids) - items_per_batch, n_batches):
        rows = np.repeat(np.arange(start, start + items_per_batch), runs_per_item)[:BATCH_ROWS]
        out.append(ids.take(pa.array(rows)).dictionary_encode())
    return out


def cpu_seconds(work) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=312, help="runs per item (the benchmark's 312)")
    parser.add_argument("--batches", type=int, default=40, help="batches timed per size and way")
    args = parser.parse_args()
    print(f"{'items':>10} {'table batches':>13} {'index_in s/batch':>16} {'TextIndex s/batch':>17} "
          f"{'index build s':>13} {'index_in total s':>16} {'TextIndex total s':>17} {'ratio':>7}")
    for n_items in args.items:
        ids = pa.array([f"item-{i:08d}" for i in range(n_items)])
        sample = batches(ids, args.runs, args.batches, seed=n_items)
        n_table_batches = -(-n_items * args.runs // BATCH_ROWS)
        per_call = cpu_seconds(lambda: [codes(b, ids) for b in sample]) / len(sample)
        index = None

        def build():
            nonlocal index
            index = TextIndex(ids)

        build_s = cpu_seconds(build)
        per_index = cpu_seconds(lambda: [index(b) for b in sample]) / len(sample)
        assert all((codes(b, ids) == index(b)).all() for b in sample[:3])  # the same positions
        total_call = per_call * n_table_batches
        total_index = build_s + per_index * n_table_batches
        print(f"{n_items:>10} {n_table_batches:>13} {per_call:>16.4f} {per_index:>17.5f} "
              f"{build_s:>13.2f} {total_call:>16.1f} {total_index:>17.1f} "
              f"{total_call / total_index:>6.1f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"peak RSS of this process: {peak:.2f} GB")


if __name__ == "__main__":
    main()
