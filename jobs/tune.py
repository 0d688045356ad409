"""Ray job: the margin sweep on Ray Tune, then the best model saved (``marc-ray tune``).

    ray job submit --working-dir . --runtime-env jobs/tune.runtime_env.yaml -- \
        python jobs/tune.py /shared/annotations --out /shared/marc --storage /shared/tune

A thin entry point: the flags, defaults and validation are those of ``marc-ray tune``
(``marc-ray tune --help``), which joins the cluster through $RAY_ADDRESS under
``ray job submit``. Exit status: 0 success, 2 bad input, 5 infrastructure or engine failure
(``marc_ray.contracts.errors.EXIT_CODES``).
"""

import sys

from marc_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
