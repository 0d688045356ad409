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
                             drift_significance(items.config))
    evaluated["fit"] = fitted_margins((certificate.extra or {}).get("model_folders") or {})
    return evaluated


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
    items = run_items(run_dir)
    report = items.config["report"] = dict(items.config.get("report") or {})  # its notes are shown
    report["notes"] = [*(report.get("notes") or []), data_note(items)]
    return build_report(run_dir, evaluate(items), command=command, out_dir=out_dir, items=items)
