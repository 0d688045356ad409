"""Ray job: the whole pipeline (``marc-ray run``: annotate → fit → score → calibrate → report).

    ray job submit --working-dir . --runtime-env jobs/pipeline.runtime_env.yaml -- \
        python jobs/pipeline.py configs/example_gpu.yaml --out /shared/runs/gpu1
    python jobs/pipeline.py configs/smoke.yaml --out /tmp/smoke     # a tiny run, offline judge

Give ``--out`` an absolute path on storage the cluster keeps (a relative run_dir would land in
the job's temporary copy of the working dir).

A thin entry point: the flags, defaults and validation are those of ``marc-ray run``
(``marc-ray run --help``), which joins the cluster through $RAY_ADDRESS under
``ray job submit``. Exit status: 0 success, 2 bad input, 5 infrastructure or engine failure
(``marc_ray.contracts.errors.EXIT_CODES``).
"""

import sys

from marc_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
