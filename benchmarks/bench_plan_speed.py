"""How long `marc-ray plan` takes on a 10,000-item configuration (target: at most 10 s).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_plan_speed.py [--items 10000]

Writes a copy of ``configs/demo.yaml`` with ``n_items`` items into a temporary folder and runs
`marc-ray plan` on it as a user would, each in its own process (``/usr/bin/time``-style figures
from ``resource``): the default (tokens counted on a seeded sample, the engine probed on a few
items), the plan that ``marc-ray run`` prints (sample, no probe) and the exact count
(``--exact-tokens --probe 0``), side by side. Prints wall and CPU seconds, peak RSS, and the
exact count's time over the default's.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "marc_ray.cli", "plan", *args], cwd=REPO,
                            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode:
        raise SystemExit(result.stderr[-2000:])
    estimate = re.search(r"estimated engine time: ([\d,]+) s", result.stdout)
    return {"wall_s": wall, "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "peak_rss_gb": after.ru_maxrss / 1e6, "estimate": estimate.group(1) if estimate else "none"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="marc-plan-speed-") as folder:
        text = open(os.path.join(REPO, "configs", "demo.yaml")).read()
        text = re.sub(r"^run_dir: .*$", f"run_dir: {folder}/run", text, flags=re.M)
        text = re.sub(r"^    n_items: \d+", f"    n_items: {args.items}", text, flags=re.M)
        config = os.path.join(folder, "config.yaml")
        open(config, "w").write(text)
        rows = [("default (sample, automatic probe)", []),
                ("inside `marc-ray run` (sample, no probe)", ["--probe", "0"]),
                ("--exact-tokens --probe 0", ["--exact-tokens", "--probe", "0"])]
        print(f"`marc-ray plan` on {args.items:,} items (configs/demo.yaml's judge), load "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print("| plan | wall s | CPU s | peak RSS GB (max of the children so far) | estimated engine time |")
        print("|---|---|---|---|---|")
        results = []
        for label, extra in rows:
            measured = run([config, *extra])
            results.append(measured)
            print(f"| {label} | {measured['wall_s']:.1f} | {measured['cpu_s']:.1f} | "
                  f"{measured['peak_rss_gb']:.2f} | {measured['estimate']} s |", flush=True)
        print(f"exact / default wall time: {results[2]['wall_s'] / results[0]['wall_s']:.1f}x; "
              f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
