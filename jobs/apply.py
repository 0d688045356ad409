"""Apply a pipeline run's certified judge to new comparisons, as a Ray job.

    ray job submit --working-dir . --runtime-env jobs/apply.runtime_env.yaml -- \
        python jobs/apply.py /shared/runs/gpu1 /shared/data/new_comparisons.parquet \
        --out /shared/runs/gpu1/applied

The new items go through what the certificate covers: the run's judges annotate them on the
cluster (Ray Data, the run's engines and simulated annotators), the run's fitted model scores
them, and the certificate routes each to a verdict or to "escalate" (``marc_ray.apply.apply_run``;
the same as ``marc-ray apply RUN_DIR DATA``). Give absolute paths on storage the cluster keeps.
A rerun with the same ``--out`` resumes the annotation. Exit status 0 on success, 1 on failure.
"""

import argparse
import sys

from marc_ray.apply import apply_run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="the folder `marc-ray run` (or jobs/pipeline.py) wrote")
    parser.add_argument("comparisons", help="new comparisons (.jsonl / .parquet, local or URI)")
    parser.add_argument("--out", required=True, help="folder for the decisions (absolute path)")
    args = parser.parse_args(argv)
    # apply_run joins the cluster (RAY_ADDRESS under `ray job submit`) once the inputs are checked
    summary = apply_run(args.run_dir, args.comparisons, args.out)
    print(f"apply: {summary['n']} items, decided {summary['coverage']:.1%}, escalated "
          f"{summary['escalated']}; by judge {summary['by_stage']}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
