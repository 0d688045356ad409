"""Provenance at a million rows: size, time and peak memory, against the naive way.

The provenance of a fitted model (``contracts.provenance``) records its training rows as a
count, a digest and the sorted 64-bit hashes of the ids, base64 in JSON. The naive way keeps
the ids themselves: a JSON list in the metadata and a Python set of strings to check against.
Both are measured on the same ids, side by side:

* record: build the record from an Arrow id column (as read from a Parquet file) and its size
  as stored (JSON bytes in the scored file's metadata);
* check: which of a million calibration ids (half of them recorded) the record holds;
* time: the best of three runs; peak memory of each step in a fourth, traced run
  (``tracemalloc``: Python and numpy allocations, plus Arrow's, through a proxy pool).

Target (issue 20): at 1M rows, at most 50 MB and 5 s.

Usage::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_provenance.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc

import numpy as np
import pyarrow as pa


def measure(function, repeats: int = 3):
    """(result, best seconds of ``repeats`` plain runs, peak MB of one traced run: Python and numpy
    allocations (tracemalloc) plus Arrow's, through a proxy pool that sees only this step's)."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    original = pa.default_memory_pool()
    step_pool = pa.proxy_memory_pool(original)
    pa.set_memory_pool(step_pool)
    tracemalloc.start()
    try:
        function()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        pa.set_memory_pool(original)
    return result, min(seconds), (peak + step_pool.max_memory()) / 1e6


def main() -> int:
    from marc_ray.contracts.provenance import provenance_record, seen_rows

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.rows
    # ids like a real data set's ("pandalm-123456-<8 hex>"), as an Arrow column of a Parquet file
    rng = np.random.default_rng(0)
    suffix = rng.integers(0, 16 ** 8, n)
    trained = pa.array([f"pandalm-{i}-{s:08x}" for i, s in enumerate(suffix)], pa.string())
    # calibration: half of them trained rows (to be refused), half fresh
    calibration = pa.concat_arrays([trained.slice(0, n // 2),
                                    pa.array([f"fresh-{i}" for i in range(n - n // 2)], pa.string())])

    record, record_s, record_mb = measure(lambda: provenance_record(trained))
    stored = len(json.dumps({"conf_marc: trained": record}).encode())
    (seen, _), check_s, check_mb = measure(lambda: seen_rows({"trained": record}, calibration))

    def naive_record():
        ids = trained.to_pylist()
        return ids, json.dumps(sorted(ids)).encode()

    (naive_ids, naive_json), naive_record_s, naive_record_mb = measure(naive_record)

    def naive_check():
        known = set(naive_ids)
        return np.fromiter((i in known for i in calibration.to_pylist()), bool, len(calibration))

    naive_seen, naive_check_s, naive_check_mb = measure(naive_check)
    assert np.array_equal(seen, naive_seen), "the hashed check disagrees with the exact one"
    assert int(seen.sum()) == n // 2

    print(f"rows: {n:,} recorded, {len(calibration):,} checked ({int(seen.sum()):,} seen)")
    print(f"{'':28s}{'hashed record':>16s}{'naive (ids)':>16s}{'ratio':>8s}")
    rows = [("stored size (MB)", stored / 1e6, len(naive_json) / 1e6),
            ("build record (s)", record_s, naive_record_s),
            ("build peak memory (MB)", record_mb, naive_record_mb),
            ("check 1M ids (s)", check_s, naive_check_s),
            ("check peak memory (MB)", check_mb, naive_check_mb)]
    for name, ours, naive in rows:
        print(f"{name:28s}{ours:16.2f}{naive:16.2f}{naive / ours if ours else float('nan'):8.1f}x")
    size_ok = stored / 1e6 <= 50 and max(record_mb, check_mb) <= 50
    time_ok = record_s + check_s <= 5
    print(f"target (<= 50 MB, <= 5 s at 1M rows): size/memory {'met' if size_ok else 'MISSED'}, "
          f"time {'met' if time_ok else 'MISSED'} ({record_s + check_s:.2f} s record + check)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
