"""Ray Train fit with the features through the object store or through Ray Data, side by side.

For each size, each path runs in its own process, so each driver's peak RSS is its own:
generated features of MARC's shape (5 annotators x 31 shot subsets x 2 orders = 632 features)
for the rows a run of N items trains on (bench_scale's split: 30% train, of which
``valid_fraction`` = 20% held out for validation), ``fit.train.fit_ray`` on a local Ray cluster
(1 worker, ``--epochs`` epochs), the threshold ``ray_data_min_bytes`` forced to 0 (Ray Data) or
to infinity (object store). Printed per size and path: the fit's seconds (``fit_ray`` alone; the
cluster start is apart), the driver's peak RSS (``os.wait4``), the process tree's peak RSS
(sampled, it counts object-store pages in every process mapping them) and the ratio of the two
paths' seconds.

    PYTHONPATH=$PWD python benchmarks/bench_fit_data.py --items 100 1000000
    PYTHONPATH=$PWD python benchmarks/bench_fit_data.py --items 100 --repeats 3
    PYTHONPATH=$PWD python benchmarks/bench_fit_data.py --items 100 --epochs 1   # a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_scale import measure  # noqa: E402  (wall time, own and process-tree peak RSS)

PATHS = {"object_store": 1 << 62, "ray_data": 0}  # ray_data_min_bytes forcing each path
N_FEATURES = 632  # FeatureLayout(all_subsets_layout(5, 5)).n_features


def arrays(n_rows: int, seed: int):
    """Generated training-like rows: a 15% disagreement rate, features that rank them a little."""
    import numpy as np

    from marc_ray.fit.data import Arrays

    rng = np.random.default_rng(seed)
    agree = (rng.random(n_rows) >= 0.15).astype(np.float32)
    features = rng.random((n_rows, N_FEATURES), dtype=np.float32)
    features[:, 0] += 0.3 * agree  # one informative feature
    return Arrays(features, agree, agree.copy(), np.arange(n_rows).astype(str).astype(object))


def child(n_items: int, path: str, epochs: int, storage: str) -> None:
    """One fit in this process; prints its seconds as JSON."""
    import ray

    from marc_ray.fit import FitConfig
    from marc_ray.fit.train import fit_ray

    n_train_split = max(int(round(0.3 * n_items)), 20)
    n_valid = max(int(round(0.2 * n_train_split)), 5)
    train, valid = arrays(n_train_split - n_valid, 0), arrays(n_valid, 1)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    start = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    cluster_s = time.perf_counter() - start
    config = FitConfig(backend="ray", num_workers=1, epochs=epochs, n_pairs=2000,
                       storage_path=storage)
    start = time.perf_counter()
    _, state = fit_ray(config, train, valid, name=f"{path}-{n_items}",
                       ray_data_min_bytes=PATHS[path])
    fit_s = time.perf_counter() - start
    print(json.dumps({"cluster_s": round(cluster_s, 1), "fit_s": round(fit_s, 1),
                      "train_rows": len(train), "valid_rows": len(valid),
                      "feature_mb": round((len(train) + len(valid)) * N_FEATURES * 4 / 2**20, 1),
                      "gamma": state["gamma"]}))
    ray.shutdown()


def run_child(folder: str, n_items: int, path: str, epochs: int) -> dict | None:
    """One fit in a process of its own; prints and returns its figures (None: it failed)."""
    log = os.path.join(folder, f"{path}-{n_items}.log")
    usage = measure([sys.executable, os.path.abspath(__file__), "--epochs", str(epochs),
                     "--child", str(n_items), path, os.path.join(folder, "ray")], log)
    with open(log, encoding="utf-8") as stream:
        text = stream.read()
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if usage["rc"] != 0 or not lines:
        print(f"{path} at {n_items} items failed (rc {usage['rc']}); its log:\n{text[-3000:]}")
        return None
    result = {"items": n_items, "path": path, **json.loads(lines[-1]),
              "driver_peak_rss_gb": usage["peak_rss_gb"], "tree_peak_rss_gb": usage["tree_rss_gb"],
              "process_s": usage["seconds"], "load": [round(x, 1) for x in os.getloadavg()]}
    print(json.dumps(result), flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[100, 1_000_000])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="fits per path and size, the "
                        "paths' order alternating; the ratio is of the medians")
    parser.add_argument("--child", nargs=3, metavar=("ITEMS", "PATH", "STORAGE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import numpy as np

    if args.child:
        child(int(args.child[0]), args.child[1], args.epochs, args.child[2])
        return 0
    print(f"load average at start {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_fit_data_") as folder:
        for n_items in args.items:
            seconds = {path: [] for path in PATHS}
            for repeat in range(args.repeats):
                for path in list(PATHS)[::1 if repeat % 2 == 0 else -1]:
                    result = run_child(folder, n_items, path, args.epochs)
                    if result is None:
                        return 1
                    seconds[path].append(result["fit_s"])
            median = {path: float(np.median(values)) for path, values in seconds.items()}
            print(json.dumps({"items": n_items, "median_fit_s": median,
                              "fit_s_ray_data_over_object_store":
                              round(median["ray_data"] / median["object_store"], 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
