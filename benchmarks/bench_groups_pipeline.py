"""Check: per-group certificates on LLMBar through the pipeline, grouped by a non-contract column.

``bench_groups.py`` calls ``GroupedCalibrator`` directly on LLMBar's replayed GPT-4 panel. This
script takes the pipeline path instead: the comparisons get LLMBar's subset family in a column
named ``subset`` (their ``group`` column is removed, so nothing but ``calibrate.by: subset``
can group them), the same panel's runs are replayed by the pipeline's replay engine, every
usable item is a calibration item, and ``marc-ray run`` certifies the simulated-annotator
confidence per subset (fit disabled, fixed 200-point grid, δ = 0.1). It prints, per α and
subset, the pipeline certificate's threshold and labels-needed estimate next to the direct
one-shot ``GroupedCalibrator`` (the "labels needed" column of ``docs/benchmarks_real_data.md``),
and exits 1 if any differ.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_groups_pipeline.py --work /tmp/llmbar_by
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from marc_ray.annotate.replay import panel_annotations, panel_runs
from marc_ray.benchmark import usable
from marc_ray.calibrate.groups import GroupedCalibrator
from marc_ray.config import PipelineConfig
from marc_ray.contracts import Certificate
from marc_ray.datasets import load_llmbar, load_llmbar_verdicts
from marc_ray.pipeline import run_pipeline

ALPHAS = (0.1, 0.2, 0.3)
DELTA = 0.1
TARGET = "GPT-4"


def write_inputs(work: str) -> tuple[str, str, str, str, list[str], dict]:
    """The comparisons (with ``subset``, without ``group``), a one-item pool and the run table."""
    comparisons = load_llmbar(subsets=["LLMBar"])
    keep = set(comparisons.column("id").to_pylist())
    verdicts = load_llmbar_verdicts()
    verdicts = verdicts.filter(pa.array([i in keep for i in verdicts.column("id").to_pylist()]))
    annotations = panel_annotations(verdicts, TARGET, comparisons=comparisons, source="llmbar")
    ok = set(np.asarray(annotations.column("id").to_pylist(), dtype=object)[usable(annotations)])
    rows = []
    for row in comparisons.to_pylist():
        if row["id"] in ok:
            rows.append({"id": row["id"], "instruction": row["instruction"],
                         "response_a": row["response_a"], "response_b": row["response_b"],
                         "human_label": row["human_label"], "split": "calibration",
                         "subset": row["group"].split("/")[-1]})
    os.makedirs(work, exist_ok=True)
    comparisons_path = os.path.join(work, "comparisons.jsonl")
    with open(comparisons_path, "w", encoding="utf-8") as stream:
        stream.writelines(json.dumps(r) + "\n" for r in rows)
    pool_path = os.path.join(work, "pool.jsonl")  # replay builds no prompts; prepare wants a pool
    with open(pool_path, "w", encoding="utf-8") as stream:
        stream.write(json.dumps({"id": "pool-0", "instruction": "1 + 1?", "response_a": "2",
                                 "response_b": "3", "human_label": "a", "annotator": "h"}) + "\n")
    runs, zero_shot, members = panel_runs(verdicts, TARGET, source="llmbar")
    runs_path = os.path.join(work, "runs.parquet")
    pq.write_table(runs, runs_path)
    kept = annotations.filter(pa.array([i in ok for i in annotations.column("id").to_pylist()]))
    direct = {"conf": np.asarray(kept.column("conf_simulated").to_pylist(), dtype=float),
              "pred": np.asarray(kept.column("pred").to_pylist(), dtype=object),
              "human": np.asarray(kept.column("human_label").to_pylist(), dtype=object),
              "groups": np.asarray([g.split("/")[-1] for g in kept.column("group").to_pylist()],
                                   dtype=object)}
    return comparisons_path, pool_path, runs_path, zero_shot, members, direct


def needed_text(entry) -> str:
    if entry is None:
        return "—"
    value = entry["n_labelled"]
    return "∞" if not math.isfinite(float(value)) else str(int(value))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="llmbar_by_subset", help="folder for the inputs and runs")
    args = parser.parse_args()
    started = time.perf_counter()
    comparisons, pool, runs, zero_shot, members, direct = write_inputs(args.work)
    mismatches = 0
    print("| alpha | subset | n | pipeline λ̂ | direct λ̂ | pipeline labels needed | "
          "direct labels needed |")
    print("|---|---|---|---|---|---|---|")
    for alpha in ALPHAS:
        config = PipelineConfig.from_dict({
            "run_dir": os.path.join(args.work, f"run-alpha-{alpha:g}"), "seed": 0,
            "data": {"comparisons": comparisons, "pool": pool},
            "annotate": {"judge_name": "gpt4-panel", "engine": "replay",
                         "engine_options": {"runs": runs, "zero_shot": zero_shot,
                                            "annotators": members}},
            "fit": {"enabled": False},
            "calibrate": {"alpha": alpha, "delta": DELTA, "grid": "fixed", "n_grid": 200,
                          "by": "subset", "confidence": "conf_simulated",
                          "compare": ["conf_simulated"]}})
        with open(os.devnull, "w") as quiet:
            result = run_pipeline(config, stream=quiet)
        record = Certificate.read(result["certificate"]).groups
        assert record["column"] == "subset"
        one_shot = GroupedCalibrator(alpha=alpha, delta=DELTA).calibrate(
            direct["conf"], direct["pred"], direct["human"], groups=direct["groups"])
        for group in sorted(record["values"]):
            entry = record["values"][group]
            ours = float(entry["stages"][0]["threshold"])
            theirs = float(one_shot.thresholds_[group][0])
            need_ours = needed_text(entry.get("labels_needed"))
            need_theirs = needed_text(one_shot.labels_needed_.get(group))
            same = ours == theirs and need_ours == need_theirs  # inf == inf holds
            mismatches += not same
            print(f"| {alpha:g} | {group} | {entry['n_calibration']} | {ours:.4g} | {theirs:.4g} | "
                  f"{need_ours} | {need_theirs} |{'' if same else ' **differs**'}")
    print(f"\n({time.perf_counter() - started:.1f} s; {mismatches} mismatches)")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
