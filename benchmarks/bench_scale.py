"""Scale: 10k / 100k / 1M items at MARC's setting (N = K = 5: 310 runs + 2 zero-shot per item)
through every stage of the CLI, each stage in its own process: wall time and peak RSS.

    PYTHONPATH=$PWD python benchmarks/bench_scale.py --sizes 10000 100000 [1000000]

Stages: annotate (engine replay, a generated run table in Parquet) -> fit (Ray Train, 1 worker)
-> score -> calibrate (5,000-point grid, 3 alphas) -> report -> apply. The run table is generated
chunk by chunk with numpy (a vectorised form of ``fit.synthetic.trap_annotations``: few-shot runs
that contradict confident many-shot runs on "trap" items), so generation itself holds one chunk.

Peak RSS: ``stage`` is the stage process (``os.wait4`` in a small launcher that forks it: see
``LAUNCHER``); ``tree`` is the most the stage's
process tree held at once, sampled every 0.2 s with psutil (it includes the Ray runtime the
stage starts: raylet, GCS, workers). Targets (issue 11): every stage completes at 1M; stage
peak <= 4 GB at 1M; time 100k -> 1M grows <= 12x. Prints a ratio per target.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from marc_ray.fit.synthetic import all_subsets_layout  # noqa: E402

ITEMS_PER_CHUNK = 5000
ALPHAS = ("0.1", "0.15", "0.2")
JUDGE = "replay-judge"
STAGES = ("annotate", "fit", "score", "calibrate", "report", "apply")


def write_inputs(folder: str, n_items: int, seed: int = 0) -> tuple[str, str]:
    """comparisons.parquet and runs.parquet (the run table) for ``n_items`` generated items."""
    layout = all_subsets_layout(5, 5)
    sizes = np.array([len(s) for s in layout.subsets])
    small = sizes <= 2
    subset_text = [",".join(map(str, s)) for s in layout.subsets]
    annotators = [f"annotator-{j}" for j in range(layout.n_annotators)] + ["zero-shot"]
    # one item's runs in layout order, then the two zero-shot runs
    run_annotator = np.r_[np.repeat(np.arange(layout.n_annotators), layout.n_subsets * 2), [5, 5]]
    run_subset = np.r_[np.tile(np.repeat(np.arange(layout.n_subsets), 2), layout.n_annotators), [0, 0]]
    run_order = np.r_[np.tile([0, 1], layout.n_annotators * layout.n_subsets), [0, 1]]
    per_item = len(run_order)
    rng = np.random.default_rng(seed)
    comparisons_path, runs_path = os.path.join(folder, "comparisons.parquet"), os.path.join(folder, "runs.parquet")
    runs_schema = pa.schema([("id", pa.string()), ("annotator", pa.string()), ("subset", pa.string()),
                             ("order", pa.string()), ("p_response_a", pa.float32())])
    with pq.ParquetWriter(comparisons_path, pa.schema([
            ("id", pa.string()), ("instruction", pa.string()), ("response_a", pa.string()),
            ("response_b", pa.string()), ("human_label", pa.string()), ("split", pa.string()),
            ("group", pa.string())])) as comparisons, pq.ParquetWriter(runs_path, runs_schema) as runs:
        for lo in range(0, n_items, ITEMS_PER_CHUNK):
            m = min(ITEMS_PER_CHUNK, n_items - lo)
            ids = pa.array([f"item-{i}" for i in range(lo, lo + m)])
            human_a = rng.random(m) < 0.5
            trap = rng.random(m) < 0.3
            strength = rng.uniform(0.0, 3.0, m)
            correct = np.where(trap, rng.random(m) < 0.15, rng.random(m) < 0.5 + 0.45 * np.tanh(strength))
            verdict_a = human_a == correct
            mu = np.where(trap[:, None], np.where(small, -1.0, 3.5)[None, :], strength[:, None])
            logit = (mu[:, None, :] + rng.normal(0, 0.4, (m, layout.n_annotators, 1))
                     + rng.normal(0, 0.5, (m, layout.n_annotators, layout.n_subsets)))
            p_verdict = 1 / (1 + np.exp(-logit))
            p_a = np.where(verdict_a[:, None, None], p_verdict, 1 - p_verdict)
            p_runs = np.repeat(p_a.reshape(m, -1), 2, axis=1)  # both orders, already mapped back
            mu_zero = np.where(trap, rng.normal(0, 1, m), 0.5 * strength)
            p_zero = 1 / (1 + np.exp(-(mu_zero[:, None] + rng.normal(0, 0.5, (m, 2)))))
            p_zero = np.where(verdict_a[:, None], p_zero, 1 - p_zero)
            p = np.concatenate([p_runs, p_zero], axis=1).astype(np.float32)
            missing = rng.random(p.shape) < 0.02  # missing runs: null (a NaN is refused, as 1.5 is)
            item = np.repeat(np.arange(m), per_item)
            runs.write_table(pa.table({
                "id": pa.DictionaryArray.from_arrays(pa.array(item.astype(np.int32)), ids),
                "annotator": pa.DictionaryArray.from_arrays(
                    pa.array(np.tile(run_annotator, m).astype(np.int32)), pa.array(annotators)),
                "subset": pa.DictionaryArray.from_arrays(
                    pa.array(np.tile(run_subset, m).astype(np.int32)), pa.array(subset_text)),
                "order": pa.DictionaryArray.from_arrays(
                    pa.array(np.tile(run_order, m).astype(np.int32)), pa.array(["ab", "ba"])),
                "p_response_a": pa.array(p.reshape(-1), mask=missing.reshape(-1))}).cast(runs_schema))
            split = rng.choice(["train", "calibration", "test"], size=m, p=[0.3, 0.5, 0.2])
            comparisons.write_table(pa.table({
                "id": ids, "instruction": pa.array(["q"] * m), "response_a": pa.array(["r1"] * m),
                "response_b": pa.array(["r2"] * m),
                "human_label": pa.array(np.where(human_a, "a", "b")), "split": pa.array(split),
                "group": pa.array([f"g{i}" for i in range(lo, lo + m)])}))
    return comparisons_path, runs_path


# A child's ru_maxrss starts at its parent's peak RSS (Linux keeps the pre-exec memory's high
# water mark), so a stage started straight from this process (or from pytest) would report at
# least what this process once held. The stage runs under a fresh small launcher instead, which
# forks it and writes the stage's own peak (ru_maxrss, KiB) to a file.
LAUNCHER = """import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as stream:
    stream.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measure(command: list[str], log: str) -> dict:
    """Run a stage; its wall time, exit code, its own peak RSS and its process tree's."""
    import psutil

    start = time.perf_counter()
    peak_file = log + ".maxrss"
    with open(log, "w") as stream:
        process = subprocess.Popen([sys.executable, "-c", LAUNCHER, peak_file, *command],
                                   stdout=stream, stderr=subprocess.STDOUT)
    tree_peak = [0]
    done = threading.Event()

    def sample():
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                members = [root] + root.children(recursive=True)
                total = 0
                for member in members:
                    try:
                        total += member.memory_info().rss
                    except psutil.Error:
                        pass
                tree_peak[0] = max(tree_peak[0], total)
            except psutil.Error:
                pass
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, _ = os.wait4(process.pid, 0)
    done.set()
    sampler.join()
    peak_kib = 0  # no file: the launcher itself failed (the exit code says so)
    if os.path.exists(peak_file):
        with open(peak_file) as stream:
            peak_kib = int(stream.read() or 0)
    return {"seconds": round(time.perf_counter() - start, 1), "rc": os.waitstatus_to_exitcode(status),
            "peak_rss_gb": round(peak_kib / 2**20, 2), "tree_rss_gb": round(tree_peak[0] / 2**30, 2)}


# fit as the benchmark runs it (Ray Train, 1 worker, 5 epochs); the suite's memory guard
# (tests/test_scale_memory.py) fits locally for 1 epoch: the same data path, minutes less
FIT_RAY = ("--backend", "ray", "--num-workers", "1", "--epochs", "5", "--address", "local")
FIT_LOCAL = ("--backend", "local", "--epochs", "1")


def run_size(n_items: int, root: str, python: str, stages=STAGES, fit_options=FIT_RAY) -> dict:
    folder = os.path.join(root, f"n{n_items}")
    os.makedirs(folder, exist_ok=True)
    start = time.perf_counter()
    comparisons, runs = os.path.join(folder, "comparisons.parquet"), os.path.join(folder, "runs.parquet")
    if "annotate" in stages or not os.path.exists(runs):  # later stages alone reuse the inputs
        comparisons, runs = write_inputs(folder, n_items)
    generate_s = time.perf_counter() - start
    commands = stage_commands(folder, n_items, comparisons, runs, python, fit_options)
    result = {"n_items": n_items, "runs": os.path.getsize(runs), "generate_s": round(generate_s, 1)}
    for stage in stages:
        result[stage] = measure(commands[stage], os.path.join(folder, f"{stage}.log"))
        print(f"  {n_items:>8} {stage:<10} {json.dumps(result[stage])}", flush=True)
        if result[stage]["rc"] != 0:
            with open(os.path.join(folder, f"{stage}.log")) as stream:
                print(stream.read()[-3000:])
            break
    return result


def stage_commands(folder: str, n_items: int, comparisons: str, runs: str, python: str,
                   fit_options=FIT_RAY) -> dict[str, list[str]]:
    """Each stage's CLI command on the inputs in ``folder`` (the run folder: ``folder/run``)."""
    run_dir = os.path.join(folder, "run")
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.yaml"), "w") as stream:  # what `report` reads
        json.dump({"annotate": {"engine": "replay"},
                   "calibrate": {"compare": ["conf_simulated", "conf_marc"]},
                   "report": {"title": f"bench_scale {n_items} items"}}, stream)
    cli = [python, "-m", "marc_ray.cli"]
    score = os.path.join(run_dir, "score", f"{JUDGE}.parquet")
    os.makedirs(os.path.dirname(score), exist_ok=True)
    commands = {
        "annotate": cli + ["annotate", "--input", comparisons, "--engine", "replay", "--judge-name", JUDGE,
                           "--engine-options", json.dumps({"runs": runs, "zero_shot": "zero-shot"}),
                           "--output", os.path.join(run_dir, "annotate")],
        "fit": cli + ["fit", os.path.join(run_dir, "annotate"), "--out", os.path.join(run_dir, "fit", JUDGE),
                      *fit_options],
        "score": cli + ["score", os.path.join(run_dir, "annotate"), "--model",
                        os.path.join(run_dir, "fit", JUDGE), "--out", score],
        "calibrate": cli + ["calibrate", score, "--confidence-column", "conf_marc", "--grid-size", "5000",
                            "--judge-name", JUDGE, "--out", os.path.join(run_dir, "calibrate")]
                     + [arg for alpha in ALPHAS for arg in ("--alpha", alpha)],
        "report": cli + ["report", run_dir],
        "apply": cli + ["apply", os.path.join(run_dir, "calibrate", "certificate.json"), score,
                        "--out", os.path.join(run_dir, "applied")],
    }
    return commands


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workdir", default=None, help="keep the files here (default: a temporary folder)")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES,
                        help="run only these stages (later stages reuse the files --workdir holds)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    root = args.workdir or tempfile.mkdtemp(prefix="bench_scale_")
    print(f"load average {os.getloadavg()}; {os.cpu_count()} cores; files under {root}")
    results = [run_size(n, root, sys.executable, args.stages) for n in args.sizes]
    print("\n| stage | " + " | ".join(f"{r['n_items']:,} items: s, stage GB, tree GB" for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for stage in STAGES:
        cells = [f"{r[stage]['seconds']} s, {r[stage]['peak_rss_gb']}, {r[stage]['tree_rss_gb']}"
                 if stage in r else "not run" for r in results]
        print(f"| {stage} | " + " | ".join(cells) + " |")
    by_size = {r["n_items"]: r for r in results}
    if 100_000 in by_size and 1_000_000 in by_size:
        for stage in STAGES:
            a, b = by_size[100_000].get(stage), by_size[1_000_000].get(stage)
            if a and b:
                print(f"{stage}: 100k -> 1M time x{b['seconds'] / a['seconds']:.1f} (target <= 12, "
                      f"ratio {b['seconds'] / a['seconds'] / 12:.2f}); peak {b['peak_rss_gb']} GB "
                      f"(target <= 4, ratio {b['peak_rss_gb'] / 4:.2f})")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(results, stream, indent=1)
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
