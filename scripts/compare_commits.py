"""Behaviour check between two commits: the demo pipeline's certificate and report numbers, from
the same annotations.

Each commit's tree is exported (``git archive``, no worktree is touched) and runs its own
``configs/demo.yaml`` (or ``--config``) with ``marc-ray run --no-plan``. The first commit
annotates (or ``--annotations RUN_DIR`` gives a finished run's ``data/`` and ``annotate/``); the
second starts from a copy of those annotations, so the fit, score, calibrate and report stages
are what is compared. Every numeric leaf of ``calibrate/certificate.json`` and
``report/report.json`` is compared exactly; wall times, paths, versions and the certificate's
digest (over paths too) are left out and listed.

    python scripts/compare_commits.py --base main --head HEAD --work /tmp/compare

Exit status: 0 when every compared number is identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# leaves that differ between two runs of the same computation: timings, where it ran, versions
VOLATILE = re.compile(r"(^|\.)(\w*wall_s|seconds\w*|\w*_seconds|elapsed\w*|finished|created|"
                      r"timestamp|date|time|version|versions|command|run_dir|model_folders|"
                      r"path|paths|source|config_text|stage_times|config\.yaml)(\.|\[|$)"
                      r"|^(certificate\.)?digest$")  # the certificate's digest covers its paths
# (config.yaml's hash: the file records run_dir; its settings are compared through the numbers)
RESUMED = ("data", "annotate")  # what the second commit takes from the first: the annotations


def export(ref: str, into: Path) -> str:
    """The tree of ``ref`` under ``into``; returns the commit's id."""
    commit = subprocess.run(["git", "rev-parse", ref], cwd=REPO, check=True, capture_output=True,
                            text=True).stdout.strip()
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=REPO, check=True,
                             capture_output=True).stdout
    with tempfile.TemporaryFile() as stream:
        stream.write(archive)
        stream.seek(0)
        with tarfile.open(fileobj=stream) as tar:
            tar.extractall(into, filter="data")
    return commit


def copy_annotations(source: Path, run_dir: Path) -> None:
    """``data/``, ``annotate/`` and their manifests of a run, into a new run folder."""
    for name in RESUMED:
        shutil.copytree(source / name, run_dir / name)
    (run_dir / "manifests").mkdir(parents=True)
    for manifest in (source / "manifests").glob("*.json"):
        if manifest.name.split("-")[0].removesuffix(".json") in ("prepare", "annotate"):
            shutil.copy2(manifest, run_dir / "manifests" / manifest.name)


def run(tree: Path, config: str, run_dir: Path, log: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run([sys.executable, "-m", "marc_ray.cli", "run", config, "--out",
                               str(run_dir), "--no-plan"], cwd=tree, env=env, stdout=out,
                              stderr=subprocess.STDOUT).returncode
    if code:
        sys.exit(f"{tree.name}: marc-ray run failed ({code}); see {log}")
    return time.perf_counter() - started


def leaves(value, prefix: str = "") -> dict:
    """Every leaf of a JSON document by its path (a.b[2].c)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items()
                for k, v in leaves(item, f"{prefix}.{key}" if prefix else str(key)).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in leaves(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


def compare(name: str, first: Path, second: Path) -> tuple[int, list[str], list[str], list[str]]:
    """(numbers compared, numbers that differ or vanished, other leaves that differ, leaves only
    the second has) of one JSON file. A leaf the second commit adds (a new key) changes no
    number the first produced, so it is listed, not counted as a difference."""
    a, b = (leaves(json.loads(path.read_text())) for path in (first, second))
    numbers, differ, other, added, left_out = 0, [], [], [], []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key, "<absent>"), b.get(key, "<absent>")
        if VOLATILE.search(key):
            left_out.append(key)
            continue
        if key not in a:
            added.append(f"{name}:{key}: {y!r}")
            continue
        is_number = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
        numbers += is_number
        if x != y and not (is_number and x != x and y != y):  # NaN equals NaN here
            (differ if is_number or "<absent>" in (x, y) else other).append(f"{name}:{key}: {x!r} -> {y!r}")
    print(f"{name}: left out {len(left_out)} leaves: " + ", ".join(left_out))
    return numbers, differ, other, added


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="first commit (default main)")
    parser.add_argument("--head", default="HEAD", help="second commit (default HEAD)")
    parser.add_argument("--config", default="configs/demo.yaml",
                        help="pipeline config, relative to each commit's tree")
    parser.add_argument("--work", default=None, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--compare-only", action="store_true",
                        help="compare the run folders already in --work (no export, no run)")
    parser.add_argument("--annotations", default=None,
                        help="a finished run folder whose data/ and annotate/ both commits start from")
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="compare_commits_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    for side, ref in (("base", args.base), ("head", args.head)) if not args.compare_only else ():
        tree, run_dir = work / f"src-{side}", work / f"run-{side}"
        commit = export(ref, tree)
        source = Path(args.annotations) if args.annotations else (
            work / "run-base" if side == "head" else None)
        if source is not None:
            copy_annotations(source.resolve(), run_dir)
        seconds = run(tree, args.config, run_dir, work / f"{side}.log")
        print(f"{side}: {ref} ({commit[:10]}) ran in {seconds:.0f} s -> {run_dir}", flush=True)
    base, head = work / "run-base", work / "run-head"
    configs = [(work / f"src-{side}" / args.config).read_text() for side in ("base", "head")]
    if configs[0] != configs[1]:
        print(f"note: {args.config} differs between the two commits")
    total, differ, other, added = 0, [], [], []
    for name in ("calibrate/certificate.json", "report/report.json"):
        n, d, o, new = compare(name, base / name, head / name)
        total, differ, other, added = total + n, differ + d, other + o, added + new
        print(f"{name}: {n} numbers compared, {len(d)} differ, {len(o)} other leaves differ, "
              f"{len(new)} leaves added")
    for line in differ + other:
        print("  " + line)
    for line in added:
        print("  added " + line)
    print("IDENTICAL" if not differ else "DIFFERENT", f"({total} numbers; left out: {VOLATILE.pattern})")
    return 0 if not differ else 1


if __name__ == "__main__":
    sys.exit(main())
