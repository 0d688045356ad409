"""Ray job: the validity study over redrawn calibration sets (``marc-ray validity``).

    ray job submit --working-dir . --runtime-env jobs/calibrate.runtime_env.yaml -- \
        python jobs/validity.py /shared/scores.parquet --confidence-column conf_marc \
        --alpha 0.15 --delta 0.1 --repetitions 1000 --out /shared/validity

A thin entry point: the flags, defaults and validation are those of ``marc-ray validity``
(``marc-ray validity --help``), which joins the cluster through $RAY_ADDRESS under
``ray job submit``. Exit status: 0 success, 2 bad input, 5 infrastructure or engine failure
(``marc_ray.contracts.errors.EXIT_CODES``).
"""

import sys

from marc_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["validity", *sys.argv[1:]]))
