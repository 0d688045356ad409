"""``marc-ray benchmark CONFIG``: the real-data benchmark of the confidence measures.

Imports stay light at module level (argparse only): the benchmark is imported by the handler.
"""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    bench = subparsers.add_parser(
        "benchmark", help="benchmark confidence measures on real human labels",
        description="For each dataset of CONFIG: AUROC, ranking risk and ECE of the confidence "
                    "measures, and the guarantee success rate and coverage over seeded repetitions "
                    "in the population and split designs, single judge and cascade. Writes "
                    "metrics.csv, validity.csv, benchmark.md, coverage_vs_alpha.png, manifest.json.")
    bench.add_argument("config", help="benchmark YAML (see configs/benchmark.yaml)")
    bench.add_argument("--out", default=None, help="output folder (default: the config's `output`)")
    bench.add_argument("--repetitions", type=int, default=None, help="override n_repetitions")
    bench.set_defaults(handler=benchmark)


def benchmark(args) -> int:
    from . import BenchmarkConfig, run_benchmark, write_outputs

    config = BenchmarkConfig.from_yaml(args.config)
    if args.repetitions is not None:
        config.n_repetitions = args.repetitions
        config.check()
    out = args.out or config.output
    command = f"marc-ray benchmark {args.config}" + (f" --out {args.out}" if args.out else "") \
        + (f" --repetitions {args.repetitions}" if args.repetitions is not None else "")
    results = run_benchmark(config, log=lambda line: print(line, file=sys.stderr))
    paths = write_outputs(results, config, out, command)
    below = [r for r in results["validity"] if not r["meets_guarantee"] and r["design"] == "population"]
    print(f"wrote {', '.join(paths.values())}")
    if below:
        print(f"{len(below)} population-design success rate(s) fall below 1 - delta even at the top "
              f"of their 95% interval: see {paths['markdown']}", file=sys.stderr)
    return 0
