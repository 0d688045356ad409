"""Ray job: certify a confidence threshold (``marc-ray calibrate``).

    ray job submit --working-dir . --runtime-env jobs/calibrate.runtime_env.yaml -- \
        python jobs/calibrate.py /shared/scores.parquet --confidence-column conf_marc \
        --alpha 0.15 --delta 0.1 --out /shared/calibration

Calibration is driver work (well under a second for a million items): the job starts no Ray
workers. The validity study is its own command, with the same flags: ``python jobs/validity.py``.

A thin entry point: the flags, defaults and validation are those of ``marc-ray calibrate``
(``marc-ray calibrate --help``), which joins the cluster through $RAY_ADDRESS under
``ray job submit``. Exit status: 0 success, 2 bad input, 5 infrastructure or engine failure
(``marc_ray.contracts.errors.EXIT_CODES``).
"""

import sys

from marc_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["calibrate", *sys.argv[1:]]))
