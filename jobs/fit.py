"""Ray job: train the MARC confidence model on Ray Train and save it.

    ray job submit --working-dir . --runtime-env jobs/fit.runtime_env.yaml -- \
        python jobs/fit.py ANNOTATIONS --out MODEL_DIR --num-workers 4 [--use-gpu]
    python jobs/fit.py --smoke-test        # a tiny local cluster and generated data

Steps: ray.init() (connects to the running cluster), MarcConfidence(config).fit on Ray Train
(DDP, a checkpoint every epoch, restarts from the last one on a worker failure), save.
Exits 0 on success, 1 on failure.
"""

import argparse
import os
import sys
import tempfile

import ray

from marc_ray.fit import FitConfig, MarcConfidence


def main() -> int:
    parser = argparse.ArgumentParser(description="fit the MARC confidence model on Ray Train")
    parser.add_argument("annotations", nargs="?", help="annotation Parquet file (or URI)")
    parser.add_argument("--out", help="folder for model.safetensors + config.json")
    parser.add_argument("--variant", default="marc", choices=["marc", "vanilla"])
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--storage-path", default=None, help="shared storage for checkpoints")
    parser.add_argument("--smoke-test", action="store_true", help="tiny local run on generated data")
    args = parser.parse_args()

    if args.smoke_test:
        from marc_ray.fit.synthetic import all_subsets_layout, trap_annotations

        ray.init(num_cpus=2, include_dashboard=False)
        folder = tempfile.mkdtemp(prefix="marc-fit-smoke-")
        args.annotations = trap_annotations(300, layout=all_subsets_layout(3, 3), seed=0)
        args.out = args.out or os.path.join(folder, "model")
        args.epochs, args.storage_path = 2, args.storage_path or os.path.join(folder, "ray")
    else:
        if not (args.annotations and args.out):
            parser.error("ANNOTATIONS and --out are required (or use --smoke-test)")
        ray.init()
    config = FitConfig(variant=args.variant, backend="ray", num_workers=args.num_workers,
                       use_gpu=args.use_gpu, epochs=args.epochs, storage_path=args.storage_path)
    model = MarcConfidence(config).fit(args.annotations)
    model.save(args.out)
    print(f"{config.variant}: gamma={model.gamma_:.3g}, bound={model.bound_['bound']:.4g}, "
          f"valid ranking risk={model.history_[-1]['valid_ranking_risk']:.3f} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
