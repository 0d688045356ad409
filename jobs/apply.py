"""Ray job: apply a run's certified judge to new comparisons (``marc-ray apply``).

    ray job submit --working-dir . --runtime-env jobs/apply.runtime_env.yaml -- \
        python jobs/apply.py /shared/runs/gpu1 /shared/data/new.parquet --out /shared/runs/gpu1/applied

The new items go through what the certificate covers: the run's judges and simulated
annotators, its fitted model, its thresholds. A rerun with the same ``--out`` resumes.

A thin entry point: the flags, defaults and validation are those of ``marc-ray apply``
(``marc-ray apply --help``), which joins the cluster through $RAY_ADDRESS under
``ray job submit``. Exit status: 0 success, 2 bad input, 5 infrastructure or engine failure
(``marc_ray.contracts.errors.EXIT_CODES``).
"""

import sys

from marc_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["apply", *sys.argv[1:]]))
