"""Benchmark: marc_ray's fixed-sequence calibration next to MAPIE's risk controller.

MAPIE (``mapie.risk_control.BinaryClassificationController``, Learn-Then-Test) controls the
*precision* of "accept when confidence >= lambda" with ``fwer_method="fixed_sequence"``. With
``y = agree`` the precision is exactly the agreement on accepted items, so both tools answer
the same question on the same data and grid:

* MAPIE's p-value for a binary risk is min(Hoeffding, Bentkus) with the Bentkus term
  ``binom.cdf(ceil(n * risk), n, alpha)`` = the exact binomial test, which rejects exactly
  when the Clopper–Pearson bound is <= alpha. So the thresholds should agree...
* ...except that MAPIE has no minimum-n rule: its fixed sequence starts at the strictest
  threshold whatever the number of items above it, so a grid that reaches the top of the
  score range makes it stop at once (no valid threshold), where marc_ray skips the leading
  thresholds that cannot pass. Run 1 below uses a grid whose top already accepts hundreds of
  items and ``min_n=1`` (no skipping): the two must agree exactly. Run 2 uses the default
  [0, 1] grid: MAPIE finds nothing, marc_ray's min-n rule finds the same threshold as run 1
  would on that grid.

MAPIE builds an (n_thresholds x n_items) prediction matrix, so it is run on 20,000 items and
1,000 thresholds (the 1,000,000 x 5,000 case of bench_calibrate.py would need 40 GB).

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/bench_mapie.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

from marc_ray.calibrate import SelectiveCalibrator, ThresholdGrid, fixed_grid  # noqa: E402

RANDOM_STATE = 0
REPEATS = 3  # both sides: the median of the same number of runs, in process CPU time


def cpu_seconds(run) -> tuple[object, float]:
    """``run()``'s result and the median process CPU time of REPEATS calls (load-independent)."""
    times, result = [], None
    for _ in range(REPEATS):
        start = time.process_time()
        result = run()
        times.append(time.process_time() - start)
    return result, float(np.median(times))


def mapie_threshold(confidence, agree, grid, alpha, delta):
    """MAPIE's certified threshold (None when it finds no valid threshold) and its time."""
    from mapie.risk_control import BinaryClassificationController, precision

    def predict_proba(x):
        x = np.asarray(x, dtype=float)
        return np.column_stack([1 - x, x])

    controller = BinaryClassificationController(
        predict_function=predict_proba, risk=precision, target_level=1 - alpha,
        confidence_level=1 - delta, list_predict_params=np.sort(np.asarray(grid, dtype=float)),
        fwer_method="fixed_sequence")
    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no valid threshold" / non-monotone risk warnings
            controller.calibrate(confidence, agree.astype(int))
    _, elapsed = cpu_seconds(run)
    valid = np.sort(np.asarray(controller.valid_predict_params, dtype=float))
    # MAPIE picks, among the valid thresholds, the one with the best recall: the lowest one
    return (None if controller.best_predict_param is None else float(controller.best_predict_param),
            valid, elapsed)


def ours(confidence, agree, grid, alpha, delta, min_n):
    calibrator = SelectiveCalibrator(alpha=alpha, delta=delta, grid=grid, min_n=min_n)
    _, elapsed = cpu_seconds(lambda: calibrator.calibrate_agreement(confidence, agree))
    result = calibrator.results_[0]
    passed = np.asarray(result.records["threshold"])[np.asarray(result.records["passed"])]
    return calibrator.threshold_, np.sort(passed), elapsed


def main() -> None:
    try:
        import mapie
    except ImportError:
        raise SystemExit("mapie is not installed: pip install mapie")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--n-grid", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(RANDOM_STATE)
    confidence = rng.uniform(0.5, 1.0, args.items)
    agree = rng.random(args.items) < confidence
    delta = 0.1
    runs = [
        ("grid [0.5, 0.98], min_n=1", ThresholdGrid(np.linspace(0.98, 0.5, args.n_grid), kind="fixed"), 1),
        ("grid [0, 1], min_n=auto", fixed_grid(args.n_grid, 0.0, 1.0), "auto"),
    ]
    print(f"mapie {mapie.__version__}; items={args.items:,}; grid={args.n_grid}; delta={delta}; one core; "
          f"median CPU seconds of {REPEATS} runs on each side")
    print(f"{'run':28s} {'alpha':>5s} {'marc_ray':>9s} {'MAPIE':>9s} {'same':>5s} {'same set':>8s} "
          f"{'marc_ray s':>10s} {'MAPIE s':>8s} {'speed-up':>8s}")
    for label, grid, min_n in runs:
        for alpha in (0.05, 0.1, 0.2):
            threshold, passed, our_time = ours(confidence, agree, grid, alpha, delta, min_n)
            reference, valid, mapie_time = mapie_threshold(confidence, agree, grid, alpha, delta)
            shown = "none" if reference is None else f"{reference:.4f}"
            same = (reference is None and np.isinf(threshold)) or (reference is not None and np.isclose(reference, threshold))
            same_set = passed.size == valid.size and np.allclose(passed, valid)
            print(f"{label:28s} {alpha:5.2f} {threshold:9.4f} {shown:>9s} {str(same):>5s} {str(same_set):>8s} "
                  f"{our_time:10.4f} {mapie_time:8.3f} {mapie_time / our_time:7.0f}x")


if __name__ == "__main__":
    main()
