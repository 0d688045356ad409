"""fit's memory with ``FitConfig.max_rows_per_set``: the same annotation file fitted with every
row read and with the rows capped, side by side.

Each fit is the benchmark's own CLI command (``bench_scale.FIT_RAY``: Ray Train, 1 worker,
5 epochs) in its own process, one after the other; printed per cap: the stage's seconds, its
peak RSS (``os.wait4``), the process tree's peak (sampled), the rows read, and the peak's ratio
to the uncapped fit's. The annotation file is one ``bench_scale.py --workdir DIR`` wrote
(``DIR/nN/run/annotate``).

    PYTHONPATH=$PWD python benchmarks/bench_fit_cap.py /tmp/bs6/work/n1000000/run/annotate \\
        --caps all 200000 24000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_scale import FIT_RAY, measure  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("annotations",
                        help="an annotation file or folder (bench_scale's run/annotate)")
    parser.add_argument("--caps", nargs="+", default=["all", "200000", "24000"],
                        help="max_rows_per_set values; the first is the baseline of the ratio")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench_fit_cap_")
    print(f"{'cap':>8} {'s':>7} {'stage GB':>9} {'tree GB':>8} {'ratio':>6}  rows read")
    baseline = None
    for cap in args.caps:
        log = os.path.join(folder, f"fit_{cap}.log")
        command = [sys.executable, "-m", "marc_ray.cli", "fit", args.annotations,
                   "--out", os.path.join(folder, f"model_{cap}"), *FIT_RAY,
                   "--max-rows-per-set", cap]
        result = measure(command, log)
        if result["rc"] != 0:
            print(open(log).read()[-3000:])
            raise SystemExit(f"fit with max_rows_per_set {cap} failed")
        saved = json.load(open(os.path.join(folder, f"model_{cap}", "config.json")))
        sampled = saved.get("rows_sampled", {})
        rows = ", ".join(f"{name} {read} of {had}" for name, (read, had) in sampled.items())
        baseline = baseline or result["peak_rss_gb"]
        print(f"{cap:>8} {result['seconds']:>7.1f} {result['peak_rss_gb']:>9.2f} "
              f"{result['tree_rss_gb']:>8.2f} {result['peak_rss_gb'] / baseline:>6.2f}  "
              f"{rows or 'every row'}", flush=True)


if __name__ == "__main__":
    main()
