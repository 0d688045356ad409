"""Benchmark: certify thresholds for 1,000,000 scored items on a 5,000-point grid, 3 alphas.

Compares :class:`marc_ray.calibrate.SelectiveCalibrator` (each item placed in the grid once,
counts accumulated from the top, the bound evaluated once per threshold) with the naive
fixed-sequence loop (for each threshold from the top: mask, count, bound, stop at the first
failure), on the same data, in one run, on one core. Both must choose the same thresholds.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/bench_calibrate.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: set before numpy loads a BLAS
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from marc_ray.calibrate import SelectiveCalibrator, fixed_grid, min_n_to_pass  # noqa: E402

RANDOM_STATE = 0


def make_data(n_items: int, seed: int = RANDOM_STATE):
    """Confidence ~ U(0.5, 1); P(agree | c) = c (a calibrated judge)."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n_items)
    agree = rng.random(n_items) < confidence
    return confidence, agree


def naive_fixed_sequence(confidence, agree, grid, alpha, delta, min_n):
    """The textbook loop: one pass over the data per threshold, stop at the first failure."""
    disagree = ~agree
    chosen = np.inf
    for threshold in grid:
        accepted = confidence >= threshold
        n = int(accepted.sum())
        if n < min_n:
            continue
        k = int(disagree[accepted].sum())
        bound = 1.0 if k == n else stats.beta.ppf(1 - delta, k + 1, n - k)
        if bound > alpha:
            break
        chosen = float(threshold)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--n-grid", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of the fast path (best kept)")
    args = parser.parse_args()
    alphas, delta = [0.05, 0.1, 0.2], 0.1
    confidence, agree = make_data(args.items)
    pred = np.where(agree, "a", "b")  # string labels for the full path
    human = np.full(args.items, "a")
    grid = fixed_grid(args.n_grid, 0.0, 1.0)

    calibrator = SelectiveCalibrator(alpha=alphas, delta=delta, grid=grid)
    calibrator.calibrate_agreement(confidence[:1000], agree[:1000])  # warm-up (imports, caches)
    fast = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        calibrator.calibrate_agreement(confidence, agree)
        fast.append(time.perf_counter() - start)
    start = time.perf_counter()
    SelectiveCalibrator(alpha=alphas, delta=delta, grid=grid).calibrate(confidence, pred, human)
    with_labels = time.perf_counter() - start

    start = time.perf_counter()
    naive = [naive_fixed_sequence(confidence, agree, grid, a, delta, min_n_to_pass(a, delta)) for a in alphas]
    naive_time = time.perf_counter() - start

    print(f"items={args.items:,}  grid={args.n_grid}  alphas={alphas}  delta={delta}  one core")
    print(f"{'method':44s} {'seconds':>9s}")
    print(f"{'SelectiveCalibrator.calibrate_agreement':44s} {min(fast):9.3f}   (best of {args.repeats})")
    print(f"{'SelectiveCalibrator.calibrate (str labels)':44s} {with_labels:9.3f}")
    print(f"{'naive per-threshold loop':44s} {naive_time:9.3f}")
    print(f"speed-up vs naive loop: {naive_time / min(fast):.0f}x")
    print(f"{'alpha':>6s} {'threshold':>10s} {'naive':>10s} {'coverage':>9s} {'bound':>7s}")
    for alpha, threshold, reference, coverage, bound in zip(alphas, calibrator.threshold_, naive,
                                                            calibrator.coverage_, calibrator.upper_bound_):
        print(f"{alpha:6.2f} {threshold:10.4f} {reference:10.4f} {coverage:9.3f} {bound:7.4f}")
    agree_all = np.array_equal(calibrator.threshold_, np.array(naive))
    print(f"thresholds identical to the naive loop: {agree_all}")
    if not agree_all:
        raise SystemExit("the fast path and the naive loop disagree")


if __name__ == "__main__":
    main()
