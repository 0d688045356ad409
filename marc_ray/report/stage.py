"""The pipeline's report stage (and ``marc-ray report``): gather, evaluate, format.

The numbers come from the stages that own them: ``calibrate.evaluation.evaluate_run`` routes the
run's items through its certificate, ``fit.stage.fitted_margins`` reads γ per epoch from each
fitted model; ``collect.build_report`` then only formats them.
"""

from __future__ import annotations

from .collect import RunItems, build_report, drift_significance, run_items


def evaluate(items: RunItems) -> dict:
    """The calibrate and fit layers' numbers on a finished run, for its report."""
    from ..calibrate.evaluation import evaluate_run
    from ..fit.stage import fitted_margins

    certificate = items.certificate
    compare = (items.config.get("calibrate") or {}).get("compare")
    evaluated = evaluate_run(certificate, items.sets, items.score_paths[0], compare,
                             drift_significance(items.config), stage_score_paths=items.score_paths)
    folders = (certificate.extra or {}).get("model_folders") or {}
    evaluated["fit"] = fitted_margins(folders)
    evaluated["advice"] = advise(items, evaluated["measures"], folders)
    return evaluated


def advise(items: RunItems, measures: dict, model_folders: dict) -> dict | None:
    """Whether the certified measure ranks below another on the test split, and what
    ``confidence: auto`` would choose with the run's settings (``calibrate.stage``'s grid and
    the first judge's fitted validation part)."""
    from ..calibrate.config import CalibrateConfig
    from ..calibrate.evaluation import measure_advice
    from ..calibrate.grid import fixed_grid
    from ..fit.stage import fitted_validation_ids

    certificate = items.certificate
    section, defaults = items.config.get("calibrate") or {}, CalibrateConfig()
    grid = fixed_grid(int(section.get("n_grid", defaults.n_grid)),
                      float(section.get("grid_low", defaults.grid_low)),
                      float(section.get("grid_high", defaults.grid_high)))
    first = certificate.stages[0].get("judge", certificate.stages[0]["name"])
    return measure_advice(certificate, measures, items.score_paths[0],
                          fitted_validation_ids(model_folders.get(first)), grid)


def data_note(items: RunItems) -> str:
    """The one sentence that says what the report's figures and tables are drawn from."""
    from ..calibrate.evaluation import CURVE_POINTS

    counts = ", ".join(f"{len(s.confidence):,} {name}" for name, s in items.sets.items()
                       if name != "train")
    return (f"Every table and figure is computed from all scored items ({counts}); the "
            f"risk-coverage curves are drawn at up to {CURVE_POINTS:,} evenly spaced points of "
            f"the exact curve, the histograms bin every item.")


def report_stage(run_dir: str, command: str | None = None, out_dir: str | None = None) -> dict:
    """Write the report of the run in ``run_dir``; return the paths written."""
    from ..run_folder import RunFolder
    from .winrate_section import write_winrate_section

    folder = RunFolder.of(run_dir)  # built once, passed down
    items = run_items(folder)
    report = items.config["report"] = dict(items.config.get("report") or {})  # its notes are shown
    report["notes"] = [*(report.get("notes") or []), data_note(items)]
    paths = build_report(folder, evaluate(items), command=command, out_dir=out_dir, items=items)
    return {**paths, **write_winrate_section(folder, out_dir or folder.report_dir)}
