"""Benchmark (a): shared-prefix KV reuse vs full prompts, on the same run rows.

    PYTHONPATH=. python benchmarks/bench_prefix_reuse.py [--items 3] [--n 3] [--k 3]
        [--mode likelihood] [--model smollm2]

Builds every run of N simulated annotators x all 2^K - 1 shot subsets x 2 orders (+ the two
zero-shot runs) for the first ``--items`` PandaLM comparisons (few-shot pool: other PandaLM
items, one example per (item, human annotator)), then judges them twice in one process with the
transformers engine on one CPU thread: reusing each (annotator, subset) prefix's KV cache, and
recomputing full prompts. Prints prefill tokens and wall time per item, their ratios, and the
largest probability difference. Seeded; the target is >= 2x fewer prefill tokens at N = K = 3.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pyarrow as pa


def pandalm_tables(n_items: int, n_pool_items: int = 60, seed: int = 0):
    """(pool, items): the pool has one row per (item, human vote) of its items, disjoint by id."""
    from marc_ray.contracts import validate_comparisons
    from marc_ray.datasets import load_dataset

    rows = load_dataset("pandalm").to_pylist()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))
    pool_rows = []
    for index in order[:n_pool_items]:
        row = rows[index]
        for vote in row["human_votes"] or []:
            pool_rows.append({"id": f"{row['id']}#{vote['annotator']}", "annotator": vote["annotator"],
                              "instruction": row["instruction"], "response_a": row["response_a"],
                              "response_b": row["response_b"], "human_label": vote["label"]})
    items = [rows[index] for index in order[n_pool_items:n_pool_items + n_items]]
    return (pa.Table.from_pylist(pool_rows),
            validate_comparisons(pa.Table.from_pylist(items), "pandalm"))


def write_inputs(folder: str, n_items: int, seed: int = 0) -> dict:
    """Write the benchmark's pool and items as JSONL files; returns their paths."""
    pool, items = pandalm_tables(n_items, seed=seed)
    paths = {"pool": os.path.join(folder, "pool.jsonl"), "input": os.path.join(folder, "items.jsonl")}
    for key, table in (("pool", pool), ("input", items)):
        with open(paths[key], "w", encoding="utf-8") as stream:
            for row in table.to_pylist():
                keep = {k: v for k, v in row.items() if k in ("id", "annotator", "instruction",
                        "response_a", "response_b", "human_label", "human_votes") and v is not None}
                stream.write(json.dumps(keep) + "\n")
    return paths


def build_runs(n: int, k: int, mode: str, model: str, n_items: int, seed: int = 0) -> list[dict]:
    from marc_ray.annotate.annotators import build_annotators, read_pool, run_layout
    from marc_ray.annotate.models import load_tokenizer
    from marc_ray.annotate.prompts import PromptBuilder, get_template

    pool, items = pandalm_tables(n_items, seed=seed)
    annotators = build_annotators(read_pool(pool), n, k, seed)
    builder = PromptBuilder(get_template("default"), annotators, run_layout(n, k), mode,
                            ("A", "B"), load_tokenizer(model))
    return builder.runs(items.to_pylist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3)
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--mode", default="likelihood", choices=["choice", "likelihood"])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from marc_ray.annotate.transformers_engine import TransformersEngine

    runs = build_runs(args.n, args.k, args.mode, args.model, args.items, args.seed)
    table = {}
    for reuse in (True, False):
        engine = TransformersEngine(args.model, batch_size=args.batch_size, reuse_prefix=reuse,
                                    num_threads=1).load()
        start = time.perf_counter()
        results = engine.judge(runs)
        seconds = time.perf_counter() - start
        table[reuse] = (engine.n_prefill_tokens_, seconds, np.array([r.p_first for r in results]))
    print(f"prefix reuse benchmark: N={args.n} K={args.k} ({len(runs) // args.items} runs/item), "
          f"{args.items} PandaLM items, {args.mode} mode, model {args.model}, 1 thread")
    print(f"{'':>14} {'prefill tok/item':>17} {'s/item':>8}")
    for reuse, label in ((True, "reuse"), (False, "no reuse")):
        tokens, seconds, _ = table[reuse]
        print(f"{label:>14} {tokens / args.items:>17.0f} {seconds / args.items:>8.2f}")
    tokens_ratio = table[False][0] / table[True][0]
    time_ratio = table[False][1] / table[True][1]
    diff = float(np.nanmax(np.abs(table[True][2] - table[False][2])))
    print(f"{'ratio':>14} {tokens_ratio:>16.2f}x {time_ratio:>7.2f}x   (no reuse / reuse)")
    print(f"max |p_reuse - p_full| = {diff:.2e}")


if __name__ == "__main__":
    main()
