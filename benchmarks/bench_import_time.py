"""Benchmark: start-up cost of the calibrate and report layers, each in a fresh interpreter.

Two measurements, each the median of ``--repeats`` fresh ``python -c`` runs (wall time of the
imports inside the child, so interpreter start-up is left out), and whether torch was loaded:

* ``import marc_ray.calibrate``: the package (its names are imported lazily);
* ``calibrate + report, every import``: every marc_ray module that any module of
  ``marc_ray/calibrate`` or ``marc_ray/report`` imports, at module level or inside a function
  (read from the source), i.e. everything a ``calibrate`` or ``report`` command can load.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_import_time.py --repeats 5
"""

from __future__ import annotations

import argparse
import ast
import json
import pathlib
import statistics
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "marc_ray"

CHILD = """
import importlib, json, sys, time
start = time.perf_counter()
for name in {modules!r}:
    importlib.import_module(name)
print(json.dumps({{"seconds": time.perf_counter() - start, "torch": "torch" in sys.modules}}))
"""


def imported_modules(parts: tuple[str, ...] = ("calibrate", "report")) -> list[str]:
    """Every marc_ray module the given subpackages import, module level and inside functions."""
    found = set()
    for part in parts:
        for path in sorted((PACKAGE / part).rglob("*.py")):
            module = ".".join(["marc_ray", *path.relative_to(PACKAGE).with_suffix("").parts])
            module = module.removesuffix(".__init__")
            found.add(module)
            package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    found.add(".".join(base + ([node.module] if node.module else [])))
                elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("marc_ray"):
                    found.add(node.module)
                elif isinstance(node, ast.Import):
                    found.update(a.name for a in node.names if a.name.startswith("marc_ray"))
    return sorted(found)


def measure(modules: list[str], repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", CHILD.format(modules=modules)], check=True,
                             capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    return {"median_s": statistics.median(r["seconds"] for r in runs),
            "runs_s": [round(r["seconds"], 3) for r in runs], "torch": runs[-1]["torch"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    closure = imported_modules()
    fit_modules = [m for m in closure if m.startswith("marc_ray.fit")]
    print(f"calibrate + report import {len(closure)} marc_ray modules; of fit: {fit_modules or 'none'}")
    for label, modules in (("import marc_ray.calibrate", ["marc_ray.calibrate"]),
                           ("calibrate + report, every import", closure)):
        result = measure(modules, args.repeats)
        print(f"{label:34s} median {result['median_s']:.3f} s  runs {result['runs_s']}  "
              f"torch loaded: {result['torch']}")


if __name__ == "__main__":
    main()
