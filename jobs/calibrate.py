"""Certify a confidence threshold, and check it over redrawn calibration sets, as a Ray job.

    ray job submit --working-dir . --runtime-env jobs/calibrate.runtime_env.yaml -- \
        python jobs/calibrate.py /shared/scores.parquet --confidence-column conf_marc \
        --alpha 0.15 --delta 0.1 --out /shared/calibration [--validity 1000]

Calibration is driver work (fixed-sequence testing over a grid takes well under a second for a
million items), so this job starts no Ray workers; it runs where the scores are, on cluster
storage. Flags are those of ``marc-ray calibrate``. ``--validity R`` then runs the validity study
(``marc-ray validity``, population design, R redrawn calibration sets) with the same scores,
confidence, first alpha, delta, grid, procedure and tie policy, into ``OUT/validity``.
Exit status 0 on success, 2 on bad input (the message names the file, row and field).
"""

import argparse
import os
import sys

from marc_ray.calibrate import cli as calibrate_cli
from marc_ray.cli import main as marc_ray

SHARED_FLAGS = ("confidence_column", "delta", "procedure", "n_grid", "grid_low", "grid_high",
                "min_n", "tie_policy")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--validity", type=int, default=0, metavar="R",
                        help="also run the validity study with R repetitions")
    extra, calibrate_argv = parser.parse_known_args(argv)
    code = marc_ray(["calibrate", *calibrate_argv])
    if code or not extra.validity:
        return code
    # the calibrate command's own parser reads the flags back, so both runs share their values
    commands = argparse.ArgumentParser().add_subparsers(dest="command")
    calibrate_cli.register(commands)
    args = commands.choices["calibrate"].parse_args(calibrate_argv)
    shared = [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in SHARED_FLAGS]
    return marc_ray(["validity", args.scores, *shared, f"--alpha={(args.alpha or [0.1])[0]}",
                     f"--repetitions={extra.validity}", "--out", os.path.join(args.out, "validity")])


if __name__ == "__main__":
    sys.exit(main())
