"""Why the split design of the validity study reports lower success than the population design.

Seeded. For the real-data cells where split-design success fell below 1 - delta in
``marc-ray benchmark configs/benchmark.yaml`` (docs/benchmarks_real_data.md), it prints, side by
side in one run: the agreement of the top-confidence items against 1 - alpha, and the success
rate of the same calibration procedure with item-level splits vs prompt-level (group) splits,
with their ratio. Heuristic measures only (no model is fitted), so it runs in about a minute.

    PYTHONPATH=. python benchmarks/bench_split_design.py
"""

from __future__ import annotations

import numpy as np

from marc_ray.benchmark import BenchmarkConfig, score_judge
from marc_ray.benchmark.loop import _agreement
from marc_ray.calibrate import fixed_grid, validity_study_from_agreement
from marc_ray.datasets import get_dataset

SEED = 7
CELLS = {"pandalm": [("simulated", 0.15), ("predictive", 0.2)],
         "llmfao": [("simulated", 0.25), ("simulated", 0.3), ("predictive", 0.3)]}


def main() -> None:
    config = BenchmarkConfig.from_yaml("configs/benchmark.yaml")
    config.measures = ["predictive", "simulated"]
    grid = fixed_grid(config.n_grid)
    print("| dataset | measure | alpha | top-confidence agreement (n) | item-split success | "
          "group-split success | ratio group / item |")
    print("|---|---|---|---|---|---|---|")
    for spec in config.datasets:
        if spec.key not in CELLS:
            continue
        dataset = get_dataset(spec.name)
        scored = score_judge(dataset.load(spec.path), dataset.load_verdicts(spec.path), spec,
                             spec.target, config)
        for measure, alpha in CELLS[spec.key]:
            agree, kept = _agreement(scored, measure, config.tie_policy)
            confidence = scored.confidence[measure][kept]
            top = confidence >= confidence.max() - 1e-9
            rates = []
            for groups in (None, scored.groups[kept]):
                study = validity_study_from_agreement(
                    confidence, agree, alpha=alpha, delta=config.delta, n_repetitions=1000,
                    design="split", calibration_size=config.calibration_fraction, groups=groups,
                    grid=grid, random_state=SEED)
                rates.append(study.success_rate)
            print(f"| {spec.key} | {measure} | {alpha} | {agree[top].mean():.3f} ({int(top.sum())}) | "
                  f"{rates[0]:.3f} | {rates[1]:.3f} | {rates[1] / rates[0]:.2f} |")
        if spec.key == "llmfao":
            agree, kept = _agreement(scored, "simulated", config.tie_policy)
            per_prompt = {}
            for group, value in zip(scored.groups[kept], agree):
                per_prompt.setdefault(group, []).append(value)
            print("\nllmfao, agreement of the panel verdict per prompt: "
                  + ", ".join(f"{g} {np.mean(v):.2f} (n={len(v)})" for g, v in sorted(
                      per_prompt.items(), key=lambda item: np.mean(item[1]))))


if __name__ == "__main__":
    main()
