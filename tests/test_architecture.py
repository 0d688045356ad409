"""The package's layering, read from its imports (module level and inside functions alike).

contracts → (demo, ray_cluster, storage) → datasets → annotate → fit → calibrate → run_folder → config
→ winrate → (report, apply, benchmark) → pipeline → CLI: a part may import only parts of a lower layer
(or itself), so there is no cycle and nothing imports against the pipeline's direction.
``docs/architecture.md`` describes the same layers.
"""

from __future__ import annotations

import ast
import functools
import pathlib

import marc_ray

PACKAGE = pathlib.Path(marc_ray.__file__).parent

# layer of each part (a subpackage or a top-level module); a higher layer may import a lower one
LAYERS = {
    "marc_ray": 0,      # the package root: __version__ only
    "contracts": 0,     # schemas, I/O, certificate, alignment
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
# Deliberate exceptions, each with its reason (keep this short)
ALLOWED = {
    ("fit", "calibrate.metrics"): "fit ranks validation models by the one AUROC / ranking-risk "
                                  "implementation; calibrate.metrics imports nothing of calibrate",
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
        if is_allowed(module, target):
            continue
        wrong.append(f"{module} (line {line}) imports {target}: {source} (layer {LAYERS[source]}) "
                     f"may not import {dest} (layer {LAYERS[dest]})")
    assert not wrong, "\n".join(wrong)


def is_allowed(module: str, target: str) -> bool:
    return any(part_of(module) == s and (target + ".").startswith(f"marc_ray.{t}.") for s, t in ALLOWED)


def test_allowed_exceptions_are_leaves():
    # an exception's target imports nothing of the package above contracts, so an edge to it can
    # never close a cycle (the cycle test below leaves these edges out)
    for _, target in ALLOWED:
        name = f"marc_ray.{target}"
        assert all(part_of(dest) == "contracts" for module, dest, _ in imports() if module == name)


def test_no_cycle_between_parts():
    graph: dict[str, set[str]] = {}
    for module, target, _ in imports():
        source, dest = part_of(module), part_of(target)
        if source != dest and not is_allowed(module, target):
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
