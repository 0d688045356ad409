"""Benchmark: the validity study, 1000 repetitions x 5,000 items, vectorised vs a naive loop.

The vectorised study (every repetition's counts in one ``bincount``, every repetition through
the procedure in one call) against the obvious loop (one ``SelectiveCalibrator`` per
repetition, then the evaluation), on the same draws. The loop runs on a subset of the
repetitions and is compared per repetition; its thresholds must be identical.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/bench_validity.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from marc_ray.calibrate import SelectiveCalibrator, validity_study_from_agreement  # noqa: E402
from marc_ray.calibrate.validity import draw_calibration_sets  # noqa: E402

RANDOM_STATE = 0


def make_file(n_items: int, seed: int = RANDOM_STATE):
    """Confidence ~ U(0, 1); P(disagree | c) = 0.4 (1 - c)."""
    rng = np.random.default_rng(seed)
    confidence = rng.random(n_items)
    agree = rng.random(n_items) >= 0.4 * (1 - confidence)
    return confidence, agree


def naive_study(confidence, agree, rows, items, n_repetitions, alpha, delta, design, procedure):
    """One calibration and one evaluation per repetition."""
    thresholds, successes = [], []
    for repetition in range(n_repetitions):
        chosen = items[rows == repetition]
        calibrator = SelectiveCalibrator(alpha=alpha, delta=delta, procedure=procedure)
        threshold = calibrator.calibrate_agreement(confidence[chosen], agree[chosen]).threshold_
        evaluated = np.ones(confidence.size, dtype=bool)
        if design == "split":
            evaluated[chosen] = False
        accepted = evaluated & (confidence >= threshold)
        successes.append(not accepted.any() or agree[accepted].mean() >= 1 - alpha)
        thresholds.append(threshold)
    return np.array(thresholds), np.array(successes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--repetitions", type=int, default=1000)
    parser.add_argument("--naive-repetitions", type=int, default=100)
    args = parser.parse_args()
    alpha, delta, seed = 0.1, 0.1, 7
    confidence, agree = make_file(args.items)
    validity_study_from_agreement(confidence, agree, alpha, delta, 5, random_state=0)  # warm-up

    print(f"items={args.items:,}  repetitions={args.repetitions}  alpha={alpha}  delta={delta}  "
          f"grid=200 fixed  calibration size=50%  one core")
    print(f"{'design':11s} {'procedure':15s} {'vectorised s':>12s} {'naive s/rep':>12s} "
          f"{'speed-up':>9s} {'success':>8s} {'coverage':>9s} {'same':>5s}")
    for design in ("split", "population"):
        for procedure in ("fixed_sequence", "bonferroni", "holm"):
            start = time.perf_counter()
            result = validity_study_from_agreement(confidence, agree, alpha, delta, args.repetitions,
                                                   design, calibration_size=0.5, procedure=procedure,
                                                   random_state=seed)
            vectorised = time.perf_counter() - start
            subset = args.naive_repetitions
            rng = np.random.default_rng(seed)
            rows, items = draw_calibration_sets(rng, subset, args.items, args.items // 2, design)
            start = time.perf_counter()
            thresholds, successes = naive_study(confidence, agree, rows, items, subset, alpha, delta,
                                                design, procedure)
            per_repetition = (time.perf_counter() - start) / subset
            same = (np.array_equal(thresholds, result.threshold[:subset])
                    and np.array_equal(successes, result.success[:subset]))
            speed_up = per_repetition * args.repetitions / vectorised
            print(f"{design:11s} {procedure:15s} {vectorised:12.3f} {per_repetition:12.4f} "
                  f"{speed_up:8.0f}x {result.success_rate:8.3f} {result.mean_coverage:9.3f} {str(same):>5s}")
            if not same:
                raise SystemExit("the vectorised study and the naive loop disagree")


if __name__ == "__main__":
    main()
