"""The package's layering, read from its imports (module level and inside functions alike).

contracts → metrics → (demo, ray_cluster, storage) → datasets → annotate → fit → calibrate →
run_folder → config → winrate → (report, apply, benchmark) → pipeline → CLI: a part may import only
parts of a lower layer (or itself), so there is no cycle and nothing imports against the pipeline's
direction. There is no exception. ``docs/architecture.md`` describes the same layers.
"""

from __future__ import annotations

import ast
import functools
import pathlib
import subprocess
import sys

import marc_ray

PACKAGE = pathlib.Path(marc_ray.__file__).parent

# layer of each part (a subpackage or a top-level module); a higher layer may import a lower one
LAYERS = {
    "marc_ray": 0,      # the package root: __version__ only
    "contracts": 0,     # schemas, I/O, certificate, alignment, a fitted model folder's file names
    "metrics": 0.5,     # AUROC, ranking risk, risk-coverage: numpy/scipy only (fit and calibrate use it)
    "demo": 1, "ray_cluster": 1, "storage": 1,
    "datasets": 1.5,    # loaders, and the prepare stage (which can draw the demo)
    "annotate": 2,
    "fit": 3,
    "calibrate": 4,
    "run_folder": 5,    # a run's paths
    "config": 6,        # PipelineConfig (composes the stages' configs)
    "winrate": 6.5,     # win rates from a finished run (reads calibrate's routing; the report shows them)
    "report": 7, "apply": 7, "benchmark": 7,
    "pipeline": 8,
    "plan": 8.5,        # prepares the data as the pipeline does, then counts what a run would do
    "cli": 9,           # marc_ray/cli.py, pipeline_cli.py and every subpackage's cli.py
}
def module_name(path: pathlib.Path) -> str:
    parts = ["marc_ray", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    bits = module.split(".")
    if len(bits) == 1:
        return "marc_ray"
    if bits[1] in ("cli", "pipeline_cli") or (len(bits) >= 3 and bits[2] == "cli"):
        return "cli"
    return bits[1]


def is_module(name: str) -> bool:
    relative = pathlib.Path(*name.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").exists() or (PACKAGE / relative / "__init__.py").exists()


@functools.lru_cache(maxsize=1)
def imports() -> list[tuple[str, str, int]]:
    """(importing module, imported marc_ray module, line) for every import statement."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                # `from X import y`: y is a module of X, or a name defined in X
                targets = [f"{base}.{a.name}" if is_module(f"{base}.{a.name}") else base
                           for a in node.names]
            else:
                continue
            out += [(module, target, node.lineno) for target in targets
                    if target.split(".")[0] == "marc_ray"]
    return out


def test_the_walk_sees_imports_inside_functions():
    found = {(m, t) for m, t, _ in imports()}
    assert ("marc_ray.apply", "marc_ray.annotate.stage") in found      # a lazy import in apply_run
    assert ("marc_ray.pipeline", "marc_ray.report.stage") in found     # one in run_pipeline
    assert len(found) > 100


def test_every_part_has_a_layer():
    parts = {part_of(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert parts <= set(LAYERS), f"give these parts a layer: {sorted(parts - set(LAYERS))}"


def test_no_import_against_the_direction():
    wrong = []
    for module, target, line in imports():
        source, dest = part_of(module), part_of(target)
        if source == dest or LAYERS[dest] < LAYERS[source]:
            continue
        wrong.append(f"{module} (line {line}) imports {target}: {source} (layer {LAYERS[source]}) "
                     f"may not import {dest} (layer {LAYERS[dest]})")
    assert not wrong, "\n".join(wrong)


def test_no_cycle_between_parts():
    graph: dict[str, set[str]] = {}
    for module, target, _ in imports():
        source, dest = part_of(module), part_of(target)
        if source != dest:
            graph.setdefault(source, set()).add(dest)
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [node, nxt])
                                     if nxt in path else f"import cycle through {node} -> {nxt}")
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_calibrate_imports_nothing_of_fit():
    # a fitted model's file names live in contracts.model_folder and the metrics in
    # marc_ray.metrics: calibrate needs nothing of fit, whose estimator loads torch
    wrong = [f"{module} (line {line}) imports {target}" for module, target, line in imports()
             if part_of(module) == "calibrate" and part_of(target) == "fit"]
    assert not wrong, "\n".join(wrong)


def test_calibrate_and_report_load_no_torch():
    """Every module of calibrate and report, and every marc_ray module they import (inside
    functions too), imported in a fresh interpreter: torch is not among sys.modules."""
    modules = sorted({m for m, t, _ in imports() if part_of(m) in ("calibrate", "report")}
                     | {t for m, t, _ in imports() if part_of(m) in ("calibrate", "report")})
    assert "marc_ray.calibrate.stage" in modules and "marc_ray.report.stage" in modules
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n    importlib.import_module(name)\n"
            "print(sorted(m for m in ('torch', 'vllm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def engine_name_comparisons(tree: ast.AST, names: set[str]) -> list[int]:
    """Lines of ``==`` / ``!=`` / ``in`` / ``not in`` comparisons against an engine's name (a
    string, or a tuple, list or set of strings)."""
    def names_an_engine(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in names
        return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(map(names_an_engine, node.elts))

    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Compare)
            and any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops)
            and any(names_an_engine(side) for side in [node.left, *node.comparators])]


def test_the_engine_check_sees_comparisons():
    names = {"replay", "vllm"}
    tree = ast.parse("a = engine == 'replay'\nb = x.get('engine') != 'vllm'\n"
                     "c = config.engine in ('vllm', 'x')\nd = spec.judges_items\n")
    assert engine_name_comparisons(tree, names) == [1, 2, 3]


def test_no_engine_comparison_outside_the_registry():
    """What an engine is and does is asked of its spec in ``annotate/engines.py`` (a new engine
    is one entry there plus its module), never decided by comparing its name."""
    from marc_ray.annotate.engines import REGISTRY

    registry = PACKAGE / "annotate" / "engines.py"
    wrong = [f"{path.relative_to(PACKAGE.parent)}:{line}"
             for path in sorted(PACKAGE.rglob("*.py")) if path != registry
             for line in engine_name_comparisons(ast.parse(path.read_text(encoding="utf-8")),
                                                 set(REGISTRY))]
    assert not wrong, "ask the engine's EngineSpec instead: " + ", ".join(wrong)


# -- every default written once (issue 24) ------------------------------------------------------

def _settings_scopes():
    """(settings dataclasses, the parts whose functions take those settings): a parameter of a
    function there that is named like a field must not restate the field's default."""
    from marc_ray.annotate.config import AnnotateConfig
    from marc_ray.calibrate.audit import AuditOptions
    from marc_ray.calibrate.config import CalibrateConfig
    from marc_ray.calibrate.validity import ValidityOptions
    from marc_ray.fit.config import FitConfig, TuneOptions

    return [((CalibrateConfig, ValidityOptions, AuditOptions),
             ("calibrate", "apply", "report", "benchmark", "cli")),
            ((FitConfig, TuneOptions), ("fit", "cli")),
            ((AnnotateConfig,), ("annotate", "cli"))]


def _literal(node):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return _literal  # not a literal: a name (CalibrateConfig.alpha), a call, ...


def _restated_defaults(tree, owned: dict) -> list[tuple[int, str, object, str]]:
    """(line, name, value, owner) of each function parameter or ``add_argument(dest/--flag,
    default=...)`` whose literal default equals the default of the field of that name."""
    found = []
    for node in ast.walk(tree):
        pairs = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs += [(a.arg, d) for a, d in zip(positional[len(positional) - len(args.defaults):],
                                                   args.defaults)]
            pairs += [(a.arg, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            keywords = {k.arg: k.value for k in node.keywords}
            flags = [_literal(a) for a in node.args if isinstance(_literal(a), str)]
            dest = _literal(keywords["dest"]) if "dest" in keywords else (
                flags[0].lstrip("-").replace("-", "_") if flags else None)
            if "default" in keywords and isinstance(dest, str):
                pairs.append((dest, keywords["default"]))
        for name, default in pairs:
            value = _literal(default)
            for owner, field_default in owned.get(name, ()):
                if type(value) is type(field_default) and value == field_default:
                    found.append((default.lineno, name, value, owner))
    return found


def test_no_literal_default_of_a_settings_field_outside_its_dataclass():
    """``alpha=0.1`` written in a function of calibrate would be a second home of
    ``CalibrateConfig.alpha``'s default: such a parameter says ``alpha=CalibrateConfig.alpha``
    (and a CLI flag comes from ``contracts.options.add_flags``). None, "" and empty containers
    mean "not given" and are not defaults of anything."""
    from marc_ray.contracts.options import defaults

    wrong = []
    for classes, parts in _settings_scopes():
        owned: dict = {}
        for cls in classes:
            for name, value in defaults(cls).items():
                if value not in (None, "", ()) and not isinstance(value, (list, dict)):
                    owned.setdefault(name, []).append((cls.__name__, value))
        for path in sorted(PACKAGE.rglob("*.py")):
            if part_of(module_name(path)) not in parts or path.name == "config.py":
                continue
            for line, name, value, owner in _restated_defaults(
                    ast.parse(path.read_text(encoding="utf-8")), owned):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name}={value!r} "
                             f"restates {owner}.{name}")
    assert not wrong, "\n".join(wrong)


def test_the_default_scan_sees_a_restated_default():
    owned = {"alpha": [("CalibrateConfig", 0.1)], "n_grid": [("CalibrateConfig", 200)]}
    tree = ast.parse("def f(x, alpha=0.1, *, n_grid=CalibrateConfig.n_grid, beta=0.1): pass\n"
                     "p.add_argument('--n-grid', type=int, default=200)\n"
                     "p.add_argument('--alpha', default=0.2)\n")
    assert [(line, name) for line, name, _, _ in _restated_defaults(tree, owned)] == [
        (1, "alpha"), (2, "n_grid")]


def test_jobs_use_no_argparse():
    """``jobs/*.py`` wrap ``marc_ray.cli.main``: their flags and defaults are the CLI's."""
    jobs = sorted((PACKAGE.parent / "jobs").glob("*.py"))
    assert jobs
    wrong = []
    for path in jobs:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            wrong += [f"{path.name}:{node.lineno} imports {n}" for n in names
                      if n.split(".")[0] in ("argparse", "click", "typer")]
    assert not wrong, "\n".join(wrong)
