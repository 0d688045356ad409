"""Benchmark: per-group vs single-threshold certificates on real human labels (LLMBar, LLMFAO).

The judges' recorded verdicts are replayed as a panel of simulated annotators, exactly as
``marc-ray benchmark`` scores its "simulated" measure (``annotate.replay.panel_annotations``:
the target judge's verdict is the panel's majority, its confidence the panel's vote share).
Groups: LLMBar's subsets (Natural and the four Adversarial families; and Natural vs all
Adversarial) and LLMFAO's 13 prompts. For each alpha, the population-design group validity
study (``calibrate.group_validity``) certifies, on the same seeded draws, one threshold for all
items (at delta) and one per group (delta / G each), and judges both on every group: coverage,
agreement on accepted items and success (agreement >= 1 - alpha, accepting nothing counts as
success). The rows where the single threshold's success on a group falls below 1 - delta are
where one threshold over-accepts a hard group. A one-shot certification on all items adds each
abstaining group's labels-needed estimate.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_groups.py --out docs/bench_groups.md
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from marc_ray.annotate.replay import panel_annotations
from marc_ray.benchmark import usable
from marc_ray.calibrate.group_validity import group_validity_study
from marc_ray.calibrate.groups import GroupedCalibrator
from marc_ray.contracts import agreement
from marc_ray.datasets import load_llmbar, load_llmbar_verdicts, load_llmfao, load_llmfao_verdicts

ALPHAS = (0.1, 0.2, 0.3)
DELTA = 0.1


def scored(name: str):
    """Target judge's panel confidence, verdict, human label and group per usable item."""
    if name == "llmbar":
        comparisons = load_llmbar(subsets=["LLMBar"])
        verdicts = load_llmbar_verdicts()
        target = "GPT-4"
    else:
        comparisons, verdicts, target = load_llmfao(), load_llmfao_verdicts(), "gpt-4"
    keep = set(comparisons.column("id").to_pylist())
    import pyarrow as pa

    verdicts = verdicts.filter(pa.array([i in keep for i in verdicts.column("id").to_pylist()]))
    table = panel_annotations(verdicts, target, comparisons=comparisons, source=name)
    table = table.filter(pa.array(usable(table)))
    column = lambda c: np.asarray(table.column(c).to_pylist(), dtype=object)  # noqa: E731
    return (target, column("conf_simulated").astype(float), column("pred"), column("human_label"),
            column("group"))


def groupings(name: str, groups: np.ndarray) -> dict[str, np.ndarray]:
    if name == "llmbar":
        family = np.array([g.split("/")[-1] for g in groups], dtype=object)
        coarse = np.array(["Natural" if g.endswith("Natural") else "Adversarial" for g in groups],
                          dtype=object)
        return {"subsets (5)": family, "Natural vs Adversarial": coarse}
    return {"prompts (13)": np.asarray(groups, dtype=object)}


def fmt(value, digits=3):
    return "—" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=1000)
    parser.add_argument("--out", default=None, help="write the markdown section there")
    args = parser.parse_args()
    started = time.perf_counter()
    lines = []
    for dataset in ("llmbar", "llmfao"):
        target, conf, pred, human, raw_groups = scored(dataset)
        agree_all, kept = agreement(pred, human, "drop")
        conf, pred, human, raw_groups = conf[kept], pred[kept], human[kept], raw_groups[kept]
        for grouping, groups in groupings(dataset, raw_groups).items():
            names = sorted(set(groups.tolist()))
            lines.append(f"\n#### {dataset}, target {target}, groups: {grouping} "
                         f"({conf.size} items after the tie policy)\n")
            lines.append("| alpha | group | n | judge agreement (all items) | single: coverage | "
                         "single: agreement | single: success | per-group: coverage | "
                         "per-group: agreement | per-group: success | labels needed |")
            lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
            for alpha in ALPHAS:
                result = group_validity_study(conf, agree_all, groups, alpha, DELTA,
                                              args.repetitions, calibration_size=0.5, random_state=0)
                one_shot = GroupedCalibrator(alpha=alpha, delta=DELTA).calibrate(conf, pred, human,
                                                                                 groups=groups)
                for g in names:
                    s, p = result.single[g], result.per_group[g]
                    flag = " **(over-accepts)**" if s["success_rate"] < 1 - DELTA else ""
                    need = one_shot.labels_needed_.get(g)
                    need_text = "—" if need is None else (
                        "∞ (rate ≥ α)" if not np.isfinite(need["n_labelled"]) else f"{int(need['n_labelled'])}")
                    lines.append(
                        f"| {alpha:g} | {g} | {p['n']} | {agree_all[groups == g].mean():.3f} | "
                        f"{s['mean_coverage']:.3f} | {fmt(s['mean_agreement'])} | "
                        f"{s['success_rate']:.3f}{flag} | {p['mean_coverage']:.3f} | "
                        f"{fmt(p['mean_agreement'])} | {p['success_rate']:.3f} | {need_text} |")
                lines.append(
                    f"| {alpha:g} | **every group at once** | {conf.size} | {agree_all.mean():.3f} | "
                    f"{result.single_joint['mean_coverage']:.3f} | {fmt(result.single_joint['mean_agreement'])} | "
                    f"{result.single_joint['success_rate']:.3f} | {result.joint['mean_coverage']:.3f} | "
                    f"{fmt(result.joint['mean_agreement'])} | {result.joint['success_rate']:.3f} | |")
                lines.append(
                    f"| {alpha:g} | all items pooled | {conf.size} | {agree_all.mean():.3f} | "
                    f"{result.single_overall['mean_coverage']:.3f} | "
                    f"{fmt(result.single_overall['mean_agreement'])} | "
                    f"{result.single_overall['success_rate']:.3f} | {result.overall['mean_coverage']:.3f} | "
                    f"{fmt(result.overall['mean_agreement'])} | {result.overall['success_rate']:.3f} | |")
    text = "\n".join(lines)
    print(text)
    print(f"\n({args.repetitions} repetitions per row; {time.perf_counter() - started:.1f} s)")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as stream:
            stream.write(text + "\n")


if __name__ == "__main__":
    main()
