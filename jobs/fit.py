"""Ray job: train the MARC confidence model on Ray Train (``marc-ray fit``).

    ray job submit --working-dir . --runtime-env jobs/fit.runtime_env.yaml -- \
        python jobs/fit.py /shared/annotations --out /shared/marc --backend ray --num-workers 4

A thin entry point: the flags, defaults and validation are those of ``marc-ray fit``
(``marc-ray fit --help``), which joins the cluster through $RAY_ADDRESS under
``ray job submit``. Exit status: 0 success, 2 bad input, 5 infrastructure or engine failure
(``marc_ray.contracts.errors.EXIT_CODES``).
"""

import sys

from marc_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["fit", *sys.argv[1:]]))
