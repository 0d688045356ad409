"""Outputs: metrics.csv, validity.csv, benchmark.md, coverage_vs_alpha.png, manifest.json."""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict
from pathlib import Path

from .. import __version__
from ..contracts import write_json_atomic, write_text_atomic
from .config import DESIGNS, BenchmarkConfig


def _csv(rows: list[dict]) -> str:
    import csv
    import io

    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return stream.getvalue()


def _mean_sd(row: dict, key: str) -> str:
    if row["n_splits"] > 1:
        return f"{row[key]:.3f} ± {row[key + '_sd']:.3f}"
    return f"{row[key]:.3f}"


def render_markdown(results: dict, config: BenchmarkConfig, command: str) -> str:
    """The benchmark tables in Markdown (what docs/benchmarks_real_data.md quotes)."""
    lines = [f"Command: `{command}`; seed {config.seed}; {config.n_repetitions} repetitions per cell; "
             f"delta = {config.delta}; tie policy '{config.tie_policy}'; fit fraction "
             f"{config.fit_fraction}; calibration fraction {config.calibration_fraction}.", ""]
    for name, summary in results["datasets"].items():
        lines += [f"### {name} (target {summary['target']}; {summary['n_evaluation']} held-out items, "
                  f"{summary['n_kept']} kept by the tie policy; {summary['n_fit']} fit the learned measures)", "",
                  "| measure | agreement | AUROC | ranking risk | ECE | AUROC vs panel verdict |",
                  "|---|---|---|---|---|---|"]
        for m in (r for r in results["metrics"] if r["dataset"] == name):
            cells = [_mean_sd(m, key) for key in ("agreement", "auroc", "ranking_risk", "ece",
                                                   "auroc_panel_verdict")]
            lines.append(f"| {m['measure']} | " + " | ".join(cells) + " |")
        first = next(r for r in results["metrics"] if r["dataset"] == name)
        if first["n_splits"] > 1:
            lines += ["", f"(mean ± sd over {first['n_splits']} seeded fit / evaluation splits; "
                      "the validity studies below use the first split)"]
        for setting in ("single", "cascade"):
            rows = [r for r in results["validity"] if r["dataset"] == name and r["setting"] == setting]
            if not rows:
                continue
            lines += ["", f"{setting} ({rows[0]['judges']}): success rate [95% CI] and mean coverage",
                      "", "| measure | alpha | population success | population coverage | "
                      "split success | split coverage |", "|---|---|---|---|---|---|"]
            keyed = {(r["measure"], r["alpha"], r["design"]): r for r in rows}
            for measure in config.measures:
                for alpha in config.alphas:
                    cells = []
                    for design in DESIGNS:
                        r = keyed[(measure, alpha, design)]
                        flag = "" if r["meets_guarantee"] else " **below**"
                        cells += [f"{r['success_rate']:.3f} [{r['success_low']:.3f}, {r['success_high']:.3f}]{flag}",
                                  f"{r['mean_coverage']:.3f}"]
                    lines.append(f"| {measure} | {alpha} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def plot_coverage(results: dict, config: BenchmarkConfig, path: Path) -> None:
    """Mean coverage vs alpha per measure (population solid, split dashed), one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["datasets"])
    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for axis, name in zip(axes[0], names):
        for color, measure in enumerate(config.measures):
            for design, style in (("population", "-"), ("split", "--")):
                rows = sorted((r for r in results["validity"] if r["dataset"] == name and
                               r["measure"] == measure and r["design"] == design and
                               r["setting"] == "single"), key=lambda r: r["alpha"])
                axis.plot([r["alpha"] for r in rows], [r["mean_coverage"] for r in rows], style,
                          color=f"C{color}", marker="o", markersize=3, label=f"{measure} ({design})")
        axis.set_title(f"{name}: {results['datasets'][name]['target']}")
        axis.set_xlabel("alpha (tolerated disagreement)")
        axis.set_ylabel(f"mean coverage (delta = {config.delta})")
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{path.name}")
    figure.savefig(temporary, dpi=120)
    plt.close(figure)
    temporary.replace(path)


def _versions() -> dict:
    versions = {"marc_ray": __version__, "python": platform.python_version()}
    for name in ("numpy", "scipy", "pyarrow", "torch"):
        module = sys.modules.get(name)
        versions[name] = getattr(module, "__version__", None) if module else None
    return versions


def write_outputs(results: dict, config: BenchmarkConfig, out: Path, command: str) -> dict:
    """Write metrics.csv, validity.csv, benchmark.md, coverage_vs_alpha.png, manifest.json."""
    out = Path(out)
    paths = {"metrics": out / "metrics.csv", "validity": out / "validity.csv",
             "markdown": out / "benchmark.md", "plot": out / "coverage_vs_alpha.png",
             "manifest": out / "manifest.json"}
    write_text_atomic(_csv(results["metrics"]), paths["metrics"])
    write_text_atomic(_csv([{k: v for k, v in r.items()} for r in results["validity"]]), paths["validity"])
    write_text_atomic(render_markdown(results, config, command), paths["markdown"])
    plot_coverage(results, config, paths["plot"])
    config_record = asdict(config)
    write_json_atomic({"command": command, "config": config_record, "versions": _versions(),
                       "datasets": results["datasets"],
                       "below_guarantee": [r for r in results["validity"] if not r["meets_guarantee"]]},
                      paths["manifest"])
    return {k: str(v) for k, v in paths.items()}
