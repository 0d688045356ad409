"""Ray job: the margin sweep on Ray Tune (ASHA), then refit and save the best model.

    ray job submit --working-dir . --runtime-env jobs/tune.runtime_env.yaml -- \
        python jobs/tune.py ANNOTATIONS --out MODEL_DIR --num-samples 16 --select bound
    python jobs/tune.py --smoke-test       # a tiny local cluster, generated data, 2 trials

Exits 0 on success, 1 on failure.
"""

import argparse
import os
import sys
import tempfile

import ray

from marc_ray.contracts import write_json_atomic
from marc_ray.fit import FitConfig, tune_margin


def main() -> int:
    parser = argparse.ArgumentParser(description="sweep the MARC margin on Ray Tune")
    parser.add_argument("annotations", nargs="?", help="annotation Parquet file (or URI)")
    parser.add_argument("--out", help="folder for the best model and tune.json")
    parser.add_argument("--num-samples", type=int, default=16)
    parser.add_argument("--select", default="valid_ranking_risk", choices=["valid_ranking_risk", "bound"])
    parser.add_argument("--trainer", default="local", choices=["local", "ray_train"],
                        help="local loop per trial, or a nested TorchTrainer per trial")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--storage-path", default=None)
    parser.add_argument("--smoke-test", action="store_true", help="tiny local run on generated data")
    args = parser.parse_args()

    if args.smoke_test:
        from marc_ray.fit.synthetic import all_subsets_layout, trap_annotations

        ray.init(num_cpus=2, include_dashboard=False)
        folder = tempfile.mkdtemp(prefix="marc-tune-smoke-")
        args.annotations = trap_annotations(300, layout=all_subsets_layout(3, 3), seed=0)
        args.out = args.out or os.path.join(folder, "model")
        args.num_samples, args.epochs = 2, 2
        args.storage_path = args.storage_path or os.path.join(folder, "tune")
    else:
        if not (args.annotations and args.out):
            parser.error("ANNOTATIONS and --out are required (or use --smoke-test)")
        ray.init()
    outcome = tune_margin(args.annotations, FitConfig(epochs=args.epochs),
                          num_samples=args.num_samples, select=args.select, trainer=args.trainer,
                          storage_path=args.storage_path and os.path.abspath(args.storage_path))
    outcome.model.save(args.out)
    write_json_atomic({"best_config": outcome.best_config.to_dict(), "select": args.select,
                       "best_metrics": outcome.best_metrics, "trials": outcome.trials},
                      os.path.join(args.out, "tune.json"))
    print(f"best of {len(outcome.trials)} trials by {args.select}: "
          f"{outcome.best_metrics.get('valid_ranking_risk')} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
