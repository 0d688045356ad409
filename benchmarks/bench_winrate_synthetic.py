"""Win-rate intervals on generated pairs with a known true win rate (marc_ray.winrate.simulate):
coverage of PPI++ and human-only, mean widths, judge-only bias, over 2,000 seeded data sets per
design (vectorised: one draw of shape (2000, n) per design).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_winrate_synthetic.py
"""

from __future__ import annotations

import time

from marc_ray.winrate.simulate import PairDesign, study

DELTA, N_SETS = 0.1, 2000


def main() -> None:
    started = time.perf_counter()
    print(f"δ = {DELTA}; {N_SETS} data sets per row; N = 2000 unlabelled; judge bias b = 0.5\n")
    print("| true win rate | κ (judge informativeness) | n labelled | PPI++ coverage | "
          "human-only coverage | PPI++ width | human-only width | mean λ | PPI++ bias | "
          "judge-only bias |")
    print("|" + "---|" * 10)
    for theta in (0.5, 0.65, 0.8):
        for kappa in (0.0, 1.5):
            for n in (30, 100, 300):
                r = study(PairDesign(win_rate=theta, informativeness=kappa, n_labelled=n),
                          DELTA, N_SETS, seed=0)
                print(f"| {theta} | {kappa} | {n} | {r['ppi_coverage']:.3f} | "
                      f"{r['human_coverage']:.3f} | {r['ppi_width']:.3f} | {r['human_width']:.3f} | "
                      f"{r['mean_lambda']:.2f} | {r['ppi_bias']:+.4f} | {r['judge_only_bias']:+.3f} |")
    print(f"\n({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
