"""The transformers engine on CUDA vs CPU, with and without shared-prefix KV reuse.

Run on a GPU machine (no Ray or vLLM needed), with a model directory, e.g. one written by
``marc_ray.annotate.models.make_tiny_model``:

    python benchmarks/gpu_transformers_check.py MODEL_DIR

Prints the largest difference in P(first better) between the four settings, in both judge
modes, and the wall time of each.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from marc_ray.annotate.transformers_engine import TransformersEngine


def make_runs(n_items: int, n_prefixes: int) -> list[dict]:
    runs = []
    for p in range(n_prefixes):
        prefix = "".join(f"Example {e}: question {p}-{e}? Answer [[{'AB'[e % 2]}]]\n" for e in range(p + 2))
        for i in range(n_items):
            question = f"Which is right for item {i}: {i} + {i} = ?"
            for mode in ("choice", "likelihood"):
                runs.append({
                    "id": f"item-{i}", "run": p, "mode": mode, "prefix": prefix,
                    "suffix": question + (" Better response: [[" if mode == "choice" else " Response:"),
                    "continuation_first": "" if mode == "choice" else f" {2 * i}",
                    "continuation_second": "" if mode == "choice" else f" {2 * i + 1} maybe",
                    "label_first": "A", "label_second": "B"})
    return runs


def main(model_dir: str) -> None:
    import torch

    runs = make_runs(n_items=24, n_prefixes=3)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = {}
    print(f"{'device':8} {'reuse':6} {'seconds':>8}")
    for device in devices:
        for reuse in (True, False):
            engine = TransformersEngine(model_dir, device=device, dtype="float32",
                                        batch_size=16, reuse_prefix=reuse).load()
            start = time.perf_counter()
            out = engine.judge(runs)
            seconds = time.perf_counter() - start
            results[(device, reuse)] = np.array([r.p_first for r in out])
            print(f"{device:8} {str(reuse):6} {seconds:8.3f}")
    reference = results[("cpu", False)]
    for key, values in results.items():
        for mode in ("choice", "likelihood"):
            mask = np.array([r["mode"] == mode for r in runs])
            diff = np.max(np.abs(values[mask] - reference[mask]))
            print(f"max |p - p(cpu, no reuse)| {key[0]:5} reuse={key[1]!s:5} {mode:10}: {diff:.2e}")
    if "cuda" in devices:
        print("GPU:", torch.cuda.get_device_name(0))


if __name__ == "__main__":
    main(sys.argv[1])
