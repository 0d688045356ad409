"""A grouped replay scenario for the per-group pipeline tests (an importable helper).

The demo data, each item grouped by its kind: a replay judge (no engine, no Ray) is right and
confident on sums and capitals, often confidently wrong on facts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from marc_ray.demo import DemoSpec, write_demo


def majority(votes: list[dict]) -> str:
    a = sum(v["label"] == "a" for v in votes)
    b = sum(v["label"] == "b" for v in votes)
    return "a" if a > b else "b" if b > a else "tie"


def write_scenario(folder: Path, *, column: str = "group", values: dict | None = None,
                   split_shares=(0.35, 0.5, 0.15), edit=None) -> dict:
    """Write the comparisons (``column`` = ``values[kind]``, the kind itself by default; another
    ``column`` leaves ``group`` as two groups crossing it) and the replayed runs; return a
    pipeline config (fit MARC locally, ``calibrate.by: column``, ``confidence: auto``).
    ``edit(rows)`` may change the comparison rows before they are written."""
    comparisons, pool = write_demo(folder / "data", DemoSpec(
        n_items=240, pool_annotators=2, pool_per_annotator=3, ambiguous_rate=0.2, seed=5))
    rows = [json.loads(line) for line in Path(comparisons).read_text().splitlines()]
    rng = np.random.default_rng(1)
    splits = rng.choice(["train", "calibration", "test"], size=len(rows), p=list(split_shares))
    lines = []
    for index, (row, split) in enumerate(zip(rows, splits)):
        kind = row["kind"].split("-")[0]
        if column != "group":
            row["group"] = f"g{index % 2}"
        row[column], row["split"] = (values or {}).get(kind, kind), str(split)
        label = majority(row["human_votes"])
        if kind in ("sum", "capital") and label != "tie":
            target = 0.95 if label == "a" else 0.05
        elif rng.random() < 0.35:  # facts: often confidently wrong
            target = 0.2 if label == "a" else 0.8
        else:
            target = {"a": 0.7, "b": 0.3, "tie": 0.5}[label]
        for annotator in ("zero", "sim-1", "sim-2"):
            for order in ("ab", "ba"):
                p = float(np.clip(target + rng.normal(0, 0.03), 0.01, 0.99))
                lines.append(json.dumps({"id": row["id"], "annotator": annotator, "order": order,
                                         "p_response_a": p}))
    if edit is not None:
        edit(rows)
    grouped = folder / "comparisons.jsonl"
    grouped.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    runs = folder / "runs.jsonl"
    runs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {
        "run_dir": str(folder / "run"), "seed": 0,
        "data": {"comparisons": str(grouped), "pool": pool},
        "annotate": {"judge_name": "replayed", "engine": "replay",
                     "engine_options": {"runs": str(runs), "zero_shot": "zero"}},
        "fit": {"backend": "local", "epochs": 5, "n_pairs": 200, "pairs_per_step": 100,
                "hidden_sizes": [8, 4], "learning_rate": 0.01},
        "calibrate": {"alpha": 0.2, "delta": 0.2, "grid": "fixed", "n_grid": 20, "by": column,
                      "confidence": "auto", "tie_policy": "drop"},
    }


def run_scenario(folder: Path, data: dict):
    """Run the pipeline on a scenario's config; return (folder, config, result) for a fixture."""
    from marc_ray.config import PipelineConfig
    from marc_ray.pipeline import run_pipeline

    config = PipelineConfig.from_dict(data)
    with open(os.devnull, "w") as quiet:
        result = run_pipeline(config, stream=quiet)
    return folder, config, result
