"""Resume keeps its share: SIGKILL `marc-ray run` at about half of annotate's runs, then count
what the rerun judges again.

    PYTHONPATH=$PWD python benchmarks/bench_resume.py [--config configs/demo.yaml]
        [--items 64] [--shard-size 0] [--k-shots 0] [--batch-size 0] [--at 0.5]

1. ``marc-ray run CONFIG`` (``data.demo.n_items`` set to ``--items``; the rest of the config as
   it is) runs in its own process group; the annotate folder is polled, counting the runs
   already judged (finished shards, and the results persisted under ``_partial/``);
2. at ``--at`` of the runs the whole group (driver, its local Ray cluster) gets SIGKILL;
3. the annotate stage runs again (``annotate``, in this process, on a new local cluster) and
   reports how many runs it judged: a stop at x% of the runs should leave at most (1 - x) of
   them plus the units in flight; the shards finished before the kill must be byte-identical.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def judged_runs(folder: Path, runs_per_item: int) -> int:
    """Runs with a result on disk: rows of finished shards, and distinct persisted results."""
    import pyarrow.parquet as pq

    finished = [p for p in folder.glob("part-*.parquet")
                if (folder / "_done" / f"{p.stem}.json").exists()]
    finished_ids = {item for p in finished
                    for item in pq.read_table(p, columns=["id"]).column("id").to_pylist()}
    done = len(finished_ids) * runs_per_item
    partial = set()
    for path in (folder / "_partial").glob("*.parquet"):
        try:
            table = pq.read_table(path, columns=["id", "run"])
        except OSError:
            continue  # being renamed into place
        partial.update(zip(table.column("id").to_pylist(), table.column("run").to_pylist()))
    # persisted results of a shard finished since count once, in the shard
    return done + sum(item not in finished_ids for item, _ in partial)


def expected_runs(manifest: Path) -> tuple[int, int]:
    """(runs in all, runs per item) from the annotate manifest (no tokenizer to load: the poll
    must keep up with the run)."""
    import json

    written = json.loads(manifest.read_text())
    layout = written["fingerprint"]["layout"]
    layout = json.loads(layout) if isinstance(layout, str) else layout
    n_orders = len(layout["orders"])
    runs = len(written["fingerprint"]["annotators"]) * len(layout["subsets"]) * n_orders
    runs += n_orders if written["fingerprint"]["zero_shot"] else 0
    return written["n_items"] * runs, runs


def kill_leftovers(marker: str) -> None:
    """SIGKILL the processes of the killed run's Ray cluster (their command lines name our
    temporary folder; nobody else's do)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                command = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker in command:
                try:
                    os.kill(int(entry), signal.SIGKILL)
                except OSError:
                    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    parser.add_argument("--items", type=int, default=64, help="data.demo.n_items (0: as is)")
    parser.add_argument("--at", type=float, default=0.5, help="fraction of runs at the kill")
    parser.add_argument("--shard-size", type=int, default=0, help="annotate.shard_size (0: as is)")
    parser.add_argument("--k-shots", type=int, default=0, help="annotate.k_shots (0: as is)")
    parser.add_argument("--batch-size", type=int, default=0, help="annotate.batch_size (0: as is)")
    args = parser.parse_args()

    from marc_ray.annotate.job import annotate, prepare
    from marc_ray.config import PipelineConfig

    work = Path(tempfile.mkdtemp(prefix="bench-resume-"))
    config = yaml.safe_load(Path(args.config).read_text())
    if args.items:
        config["data"]["demo"]["n_items"] = args.items
    config["annotate"]["progress"] = False
    for key, value in (("shard_size", args.shard_size), ("k_shots", args.k_shots),
                       ("batch_size", args.batch_size)):
        if value:
            config["annotate"][key] = value
    config_path = work / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run_dir = work / "run"
    ray_tmp = work / "ray"
    ray_tmp.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_TMPDIR=str(ray_tmp),
               RAY_AUTH_MODE="disabled", TOKENIZERS_PARALLELISM="false")
    start = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "marc_ray.cli", "run", str(config_path),
                                "--out", str(run_dir)], cwd=REPO, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder, total, runs_per_item, at_kill = None, 0, 0, 0
    try:
        while process.poll() is None:
            time.sleep(0.5)
            if folder is None:
                annotate_dir = run_dir / "annotate"
                names = [p for p in annotate_dir.iterdir()] if annotate_dir.is_dir() else []
                if not names or not (names[0] / "_manifest.json").exists():
                    continue
                folder = names[0]
                total, runs_per_item = expected_runs(folder / "_manifest.json")
            at_kill = judged_runs(folder, runs_per_item)
            if at_kill >= args.at * total:
                break
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        kill_leftovers(str(ray_tmp))
    if folder is None or at_kill < args.at * total:
        sys.exit(f"the run ended before {args.at:.0%} of annotate's runs (exit {process.returncode})")
    killed_after = time.monotonic() - start
    time.sleep(1.0)  # a flush under way when the kill came has either landed or not
    kept = judged_runs(folder, runs_per_item)
    before = {p.name: p.read_bytes() for p in folder.glob("part-*.parquet")
              if (folder / "_done" / f"{p.stem}.json").exists()}

    os.environ["RAY_TMPDIR"] = str(ray_tmp)
    judge = PipelineConfig.from_run(run_dir).judges()[0]
    from marc_ray.ray_cluster import ensure_ray

    ensure_ray(num_cpus=config.get("ray", {}).get("num_cpus"))
    plan = prepare(judge)
    assert plan.n_items * plan.builder.runs_per_item == total, "expected_runs disagrees with prepare"
    rerun = annotate(judge)
    after = {name: (folder / name).read_bytes() for name in before}
    identical = all(after[name] == data for name, data in before.items())
    print(f"config: {args.config} with data.demo.n_items={args.items or 'as is'}, annotate."
          f"shard_size={args.shard_size or 'as is'}, annotate.k_shots={args.k_shots or 'as is'}, "
          f"annotate.batch_size={args.batch_size or 'as is'}; "
          f"{plan.n_items} items x {runs_per_item} runs = {total} runs in {plan.n_shards} shards")
    print(f"SIGKILL after {killed_after:.0f} s at {at_kill} runs judged ({at_kill / total:.1%}); "
          f"kept on disk: {kept} runs ({kept / total:.1%}), {len(before)} finished shards")
    print(f"rerun judged {rerun.n_runs} runs ({rerun.n_runs / total:.1%} of the total) in "
          f"{rerun.seconds:.0f} s; finished shards byte-identical: {identical}")


if __name__ == "__main__":
    main()
