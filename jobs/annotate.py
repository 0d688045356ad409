"""Ray job: the annotate stage (``marc-ray annotate``) on the cluster.

    ray job submit --working-dir . --runtime-env jobs/annotate.runtime_env.yaml -- \
        python jobs/annotate.py --input /shared/items.jsonl --pool /shared/pool.jsonl \
        --output /shared/annotations --model /shared/judge --engine vllm

A thin entry point: the flags, defaults and validation are those of ``marc-ray annotate``
(``marc-ray annotate --help``), which joins the cluster through $RAY_ADDRESS under
``ray job submit``. Exit status: 0 success, 2 bad input, 5 infrastructure or engine failure
(``marc_ray.contracts.errors.EXIT_CODES``).
"""

import sys

from marc_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["annotate", *sys.argv[1:]]))
