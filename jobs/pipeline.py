"""Submit the whole pipeline (annotate -> fit -> score -> calibrate -> report) as a Ray job.

    ray job submit --working-dir . --runtime-env jobs/pipeline.runtime_env.yaml -- \
        python jobs/pipeline.py configs/example_gpu.yaml --out /shared/runs/gpu1
    python jobs/pipeline.py --smoke-test          # a tiny local run with the offline judge

Give ``--out`` an absolute path on storage the cluster keeps (a relative run_dir would land in
the job's temporary copy of the working dir). ``--smoke-test`` runs a 16-item slice of the
demo benchmark with one simulated annotator, the heuristic confidence and no fit, into a
temporary folder. Exit status 0 on success, 1 on failure (what ``ray job submit`` reports).
"""

import argparse
import os
import sys
import tempfile

import ray

from marc_ray.config import PipelineConfig
from marc_ray.pipeline import run_pipeline

SMOKE = {
    "data": {"demo": {"n_items": 16, "pool_annotators": 1, "pool_per_annotator": 2},
             "train_fraction": 0.0, "calibration_fraction": 0.75, "test_fraction": 0.25},
    "annotate": {"model": "smollm2", "mode": "likelihood", "n_annotators": 1, "k_shots": 1,
                 "zero_shot": False, "shard_size": 8, "progress": False},
    "fit": {"enabled": False},
    "calibrate": {"alpha": 0.3, "delta": 0.2, "confidence": "conf_simulated",
                  "compare": ["conf_simulated"], "n_grid": 20},
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", help="pipeline YAML (see docs/pipeline.md)")
    parser.add_argument("--out", help="run folder (overrides run_dir); use an absolute path")
    parser.add_argument("--smoke-test", action="store_true", help="tiny run (see above)")
    args = parser.parse_args(argv)
    if not args.config and not args.smoke_test:
        parser.error("give a CONFIG or --smoke-test")
    with tempfile.TemporaryDirectory() as folder:
        if args.smoke_test:
            config = PipelineConfig.from_dict(dict(SMOKE, run_dir=args.out or os.path.join(folder, "run")),
                                              source="--smoke-test")
        else:
            config = PipelineConfig.from_yaml(args.config)
            if args.out:
                config = config.replace(run_dir=args.out)
        ray.init()  # connects to the cluster under `ray job submit`, else starts a local one
        result = run_pipeline(config, command="python jobs/pipeline.py " + " ".join(sys.argv[1:]))
        print(f"pipeline: report {result['report']}, certificate {result['certificate']}, "
              f"{result['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
