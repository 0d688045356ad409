"""Fit-stage benchmarks: loss throughput on one CPU core; Ray Train's fixed overhead.

1. Pairs per second of the MARC objective (softplus surrogate + complexity penalty) on MARC's
   published shape (5 annotators x 31 shot subsets x 2 orders = 310 runs, 632 features, MLP
   64-32-16), one torch thread: a training step (forward, backward, AdamW) and the loss alone.
2. The same training loop run locally and on Ray Train (TorchTrainer, 1 and 2 CPU workers),
   on the same data and config, side by side: the difference is Ray Train's fixed overhead
   (controller and worker start, process group, the report and checkpoint round trips), with
   the default checkpoint_every and with a checkpoint (and report) every epoch.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_fit.py            # ~2-4 min on 2 cores
    PYTHONPATH=. .venv/bin/python benchmarks/bench_fit.py --items 100 --epochs 30  # the demo's fit size
    PYTHONPATH=. .venv/bin/python benchmarks/bench_fit.py --smoke-test
    PYTHONPATH=. taskset -c 0 python benchmarks/bench_fit.py --loss-only   # part 1, pinned
    PYTHONPATH=. .venv/bin/python benchmarks/bench_fit.py --measures 3     # four measures, generated data
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
import torch

from marc_ray.fit import FitConfig
from marc_ray.fit.data import prepare
from marc_ray.fit.features import FeatureLayout
from marc_ray.fit.loss import complexity_penalty, pair_surrogate, sample_pairs
from marc_ray.fit.model import ConfidenceMLP
from marc_ray.fit.synthetic import all_subsets_layout, trap_annotations
from marc_ray.fit.train import fit_local, fit_ray


def loss_throughput(pairs_per_step: int, seconds: float, seed: int = 0) -> tuple[float, float]:
    """(training-step pairs/s, loss-only pairs/s) on 3000 random items of MARC's shape."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    n_features = FeatureLayout(all_subsets_layout(5, 5)).n_features
    x = torch.rand(3000, n_features)
    agree = torch.arange(0, 3000, 2)
    disagree = torch.arange(1, 3000, 2)
    model = ConfidenceMLP(n_features)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    rates = []
    for train in (True, False):
        pairs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            i, j = sample_pairs(agree, disagree, pairs_per_step, generator)
            with torch.set_grad_enabled(train):
                c = torch.sigmoid(model(x[torch.cat([i, j])]))
                loss = pair_surrogate(c[:pairs_per_step], c[pairs_per_step:], 0.1, 0.1) \
                    + complexity_penalty(model.weight_matrices(), 1e-4, 0.1)
            if train:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            pairs += pairs_per_step
        rates.append(pairs / (time.perf_counter() - start))
    return rates[0], rates[1]


def measures_table(seeds: int, items: int) -> None:
    """Held-out ranking risk of the four measures on generated trap data (MARC's full shape)."""
    from marc_ray.fit.baselines import compare_measures

    print(f"## Held-out ranking risk on generated data with traps ({items} items, 5x31x2 runs, "
          f"MARC defaults; test split = 20%)\n")
    print("| seed | predictive | simulated | vanilla | MARC |")
    print("|---|---|---|---|---|")
    for seed in range(seeds):
        table = trap_annotations(items, layout=all_subsets_layout(5, 5), seed=seed)
        rows = {r["measure"]: r for r in compare_measures(table, FitConfig(random_state=seed))}
        print(f"| {seed} | " + " | ".join(f"{rows[m]['ranking_risk']:.3f}" for m in
                                         ("predictive", "simulated", "vanilla", "marc")) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke-test", action="store_true", help="tiny sizes, a few seconds each")
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--loss-only", action="store_true", help="only part 1 (needs no Ray)")
    parser.add_argument("--workdir", default=None,
                        help="Ray Train checkpoints go here (default: a temporary folder, removed "
                             "at the end; never the checkout)")
    parser.add_argument("--measures", type=int, default=0, metavar="SEEDS",
                        help="only the four-measure table on generated data, over SEEDS seeds")
    args = parser.parse_args()
    if args.measures:
        measures_table(args.measures, 1500)
        return
    seconds = 1.0 if args.smoke_test else 5.0
    items, epochs = (200, 2) if args.smoke_test else (args.items, args.epochs)

    print("## Loss throughput, one CPU core (torch threads = 1), MARC's shape (632 features)\n")
    print("| pairs per step | training step (pairs/s) | loss only (pairs/s) |")
    print("|---|---|---|")
    for pairs in (250, 5000):
        train_rate, loss_rate = loss_throughput(pairs, seconds)
        print(f"| {pairs} | {train_rate:,.0f} | {loss_rate:,.0f} |")
    if args.loss_only:
        print(f"\nload average: {os.getloadavg()[0]:.1f} (1 min) on {os.cpu_count()} CPUs; "
              f"torch {torch.__version__}")
        return

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - start
    table = trap_annotations(items, layout=all_subsets_layout(5, 5), seed=0)
    workdir = args.workdir or tempfile.mkdtemp(prefix="marc-bench-fit-")
    config = FitConfig(epochs=epochs, n_pairs=5000, storage_path=os.path.abspath(workdir))
    data = prepare(table, config)
    print(f"\n## The same loop locally and on Ray Train ({len(data.train)} training items, "
          f"{epochs} epochs x 5,000 pairs; ray.init took {ray_start:.1f} s, not counted)\n")
    print("| run | wall time (s) | overhead vs local (s) | ratio to local |")
    print("|---|---|---|---|")
    start = time.perf_counter()
    fit_local(config, data.train, data.valid)
    local = time.perf_counter() - start
    print(f"| local loop | {local:.1f} | 0 | 1.0 |")
    runs = [(1, config.checkpoint_every), (2, config.checkpoint_every), (2, 1)]
    for workers, every in runs:
        start = time.perf_counter()
        fit_ray(config.replace(backend="ray", num_workers=workers, checkpoint_every=every),
                data.train, data.valid, name=f"bench-{workers}w-{every}-{int(time.time())}")
        wall = time.perf_counter() - start
        print(f"| Ray Train, {workers} worker(s), a checkpoint every {every} epoch(s) | {wall:.1f} "
              f"| {wall - local:.1f} | {wall / local:.1f} |")
    load = os.getloadavg()
    print(f"\nload average during the run: {load[0]:.1f} (1 min), on {os.cpu_count()} CPUs; "
          f"seed 0, numpy {np.__version__}, torch {torch.__version__}, ray {ray.__version__}")
    ray.shutdown()
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
