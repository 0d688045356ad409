"""Cascades and grids designed on training rows, against the fixed design, on the same draws.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_cascade_design.py --repetitions 200 --validity 1000

For each data set (at its α, below; δ = 0.1) (LLMBar with each judge's own 2 prompts × 2 orders as its simulated
annotators, a cascade of weak to strong judges; PandaLM's two judges; generated judges whose
probabilities pile up near 1), over seeded repetitions of a fresh
design part (40% of the items), calibration and test split (`marc_ray.calibrate.design.
design_validity`): the mean certified coverage on the test items and the expected cost per
item, for

* the fixed design (every judge in the given order, δ split equally, a fixed grid of 200 or
  2,000 points, the minimum-n rule): what the project did before;
* the design chosen on the training part (quantile grid, start at a predicted pass
  probability of 0.99, stages kept and δ split to the cheapest design within 2% of the best
  predicted coverage);
* each judge alone, both ways.

Costs per item are relative prices, stated per data set below (a judge's price per 1k tokens
times the same prompt length): an assumption of this benchmark, not a measurement.
``--validity R`` then runs the validity study of the whole design-then-calibrate procedure for
the designed cascade, R repetitions in both designs (split and population).
``--group-validity R`` runs it for per-group designs (``calibrate.design`` with ``calibrate.by``):
generated judges on two groups (``calibrate.generated.piled_up_groups``: 1,200 items where the
judges are weaker, 800 where they are stronger), a design per group on that group's training
rows, a cascade per group, δ split across groups; success when every group's agreement holds.
The fixed per-group procedure runs on the same draws for comparison.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DELTA = 0.1
# α per data set: the generated judges are built for 0.15; at 0.15 the real judges' panels
# certify next to nothing either way (LLMBar's GPT-4 alone: 5.5% of items), so they run at 0.25
ALPHAS = {"generated": 0.15, "llmbar": 0.25, "llmbar-palm2": 0.25, "pandalm": 0.25}
# relative cost per item (cheapest first): open 7B-13B models 1, GPT-3.5-class 2, PaLM2 4, GPT-4 30
DATASETS = {
    "llmbar": {"judges": ["LLaMA2", "ChatGPT", "GPT-4"], "costs": [1.0, 2.0, 30.0], "split_by": "item"},
    "pandalm": {"judges": ["pandalm-7b", "gpt-3.5-turbo"], "costs": [1.0, 2.0], "split_by": "item"},
    # LLMBar's panel with PaLM2 between ChatGPT and GPT-4: the one cheaper judge there that
    # certifies something alone (so the only chance of a cascade cheaper than GPT-4 alone)
    "llmbar-palm2": {"dataset": "llmbar", "judges": ["LLaMA2", "ChatGPT", "PaLM2", "GPT-4"],
                     "costs": [1.0, 2.0, 4.0, 30.0], "split_by": "item"},
}


def real_data(name: str) -> dict:
    """Per item and judge: the simulated-annotator confidence and verdict (the benchmark's own
    replay of each judge's prompts × orders), and the human label."""
    from marc_ray.benchmark.config import BenchmarkConfig
    from marc_ray.benchmark.panels import score_judge
    from marc_ray.datasets import get_dataset

    spec_fields = DATASETS[name]
    name = spec_fields.get("dataset", name)
    config = BenchmarkConfig.from_dict({
        "datasets": [{"name": name, "target": spec_fields["judges"][-1], "panel": "self",
                      "split_by": spec_fields["split_by"]}],
        "measures": ["predictive", "simulated"], "fit_fraction": 0.0001})
    spec = config.datasets[0]
    dataset = get_dataset(name)
    comparisons, verdicts = dataset.load(None), dataset.load_verdicts(None)
    scored = {judge: score_judge(comparisons, verdicts, spec, judge, config)
              for judge in spec_fields["judges"]}
    common = sorted(set.intersection(*(set(s.ids.tolist()) for s in scored.values())))
    columns = []
    for judge in spec_fields["judges"]:
        s = scored[judge]
        position = {item: i for i, item in enumerate(s.ids.tolist())}
        rows = np.array([position[item] for item in common])
        columns.append((s.confidence["simulated"][rows], s.verdict["simulated"][rows], s.human_label[rows]))
    return {"confidence": np.stack([c for c, _, _ in columns], axis=1),
            "pred": np.stack([np.asarray(p, dtype=object) for _, p, _ in columns], axis=1),
            "human_label": np.asarray(columns[0][2], dtype=object),
            "ids": np.array(common, dtype=object)}


def column(data: dict, j: int) -> dict:
    return {k: (v[:, [j]] if k in ("confidence", "pred") else v) for k, v in data.items()}


def main() -> None:
    from marc_ray.calibrate.design import design_validity
    from marc_ray.calibrate.generated import piled_up_judges

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=200)
    parser.add_argument("--validity", type=int, default=0, metavar="R",
                        help="also the designed cascade's validity study, R repetitions per design")
    parser.add_argument("--group-validity", type=int, default=0, metavar="R",
                        help="the per-group procedure's validity study, R repetitions per design")
    parser.add_argument("--datasets", nargs="+", default=["generated", "llmbar", "pandalm"])
    args = parser.parse_args()
    if args.group_validity:
        group_validity(args.group_validity)
        if not args.repetitions:
            return
    print(f"delta {DELTA}, {args.repetitions} repetitions; load {os.getloadavg()[0]:.1f}")
    print("| data | α | judges (relative cost) | procedure | grid | coverage | expected cost | success (split) |")
    print("|---|---|---|---|---|---|---|---|")
    validity = []
    for name in args.datasets:
        started = time.perf_counter()
        alpha = ALPHAS[name]
        data = piled_up_judges() if name == "generated" else real_data(name)
        judges = ["weak", "middle", "strong"] if name == "generated" else DATASETS[name]["judges"]
        costs = [1.0, 3.0, 30.0] if name == "generated" else DATASETS[name]["costs"]
        label = ", ".join(f"{j} ({c:g})" for j, c in zip(judges, costs))
        runs = [("fixed cascade", data, costs, True, 200), ("fixed cascade", data, costs, True, 2000),
                ("designed cascade", data, costs, False, 200), ("designed cascade", data, costs, False, 2000)]
        runs += [(f"{judge} alone, {way}", column(data, j), [costs[j]], way == "fixed", 200)
                 for j, judge in enumerate(judges) for way in ("fixed", "designed")]
        for procedure, part, part_costs, fixed, n_grid in runs:
            split = design_validity(part, alpha, DELTA, repetitions=args.repetitions, design="split",
                                    fixed=fixed, costs=part_costs, n_grid=n_grid, seed=0)
            print(f"| {name} ({len(data['human_label'])} items) | {alpha} | {label} | {procedure} | {n_grid} | "
                  f"{split['mean_coverage']:.3f} | {split['mean_cost']:.2f} | {split['success_rate']:.3f} |",
                  flush=True)
        for design in (("split", "population") if args.validity else ()):
            result = design_validity(data, alpha, DELTA, repetitions=args.validity, design=design,
                                     costs=costs, seed=1)
            low, high = result["success_interval_95"]
            validity.append(f"| {name} | {alpha} | {design} | {args.validity} | {result['success_rate']:.3f} "
                            f"({low:.3f}-{high:.3f}) | {result['mean_coverage']:.3f} |")
        print(f"<!-- {name}: {time.perf_counter() - started:.0f} s -->", flush=True)
    if validity:
        print(f"\nThe designed cascade's whole procedure (design on 40%, calibrate, check), "
              f"success >= {1 - DELTA:g} required:\n")
        print("| data | α | design | repetitions | success (95% interval) | mean coverage |")
        print("|---|---|---|---|---|---|")
        print("\n".join(validity))


def group_validity(repetitions: int) -> None:
    """Per-group designs against the fixed per-group procedure, both validity designs."""
    from marc_ray.calibrate.design import design_validity
    from marc_ray.calibrate.generated import piled_up_groups

    alpha = ALPHAS["generated"]
    data = piled_up_groups({"A": 1200, "B": 800}, seed=0)
    print(f"\nPer-group designs (generated, groups A 1,200 / B 800 items, alpha {alpha}, delta {DELTA}), "
          f"{repetitions} repetitions; success = every group's agreement >= {1 - DELTA:g}:\n")
    print("| design | procedure | success (95% interval) | mean coverage | seconds |")
    print("|---|---|---|---|---|")
    for design in ("split", "population"):
        for fixed in (True, False):
            started = time.perf_counter()
            result = design_validity(data, alpha, DELTA, repetitions=repetitions, design=design,
                                     fixed=fixed, costs=[1.0, 10.0], seed=2)
            low, high = result["success_interval_95"]
            print(f"| {design} | {'fixed per group' if fixed else 'designed per group'} | "
                  f"{result['success_rate']:.3f} ({low:.3f}-{high:.3f}) | "
                  f"{result['mean_coverage']:.3f} | {time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
