"""The pipeline's fit and score stages: a judge's confidence model, fitted, saved and applied.

``fit_stage`` trains (or sweeps, then trains) MARC on the training split of one judge's
annotations and saves the model folder; ``score_stage`` adds the learned confidence column;
``fitted_margins`` reads back what the report shows of a fit (γ per epoch, the kept epoch).
"""

from __future__ import annotations

import json

from ..contracts.io import is_file, join, read_text
from .config import FitSection


def fit_stage(section: FitSection, annotations: str, folder: str, ray) -> dict:
    """Fit the confidence model on ``annotations`` (a path); save it to ``folder``.

    ``ray`` is the run's ``RayConfig``, joined when the fit runs on Ray Train or is swept with
    Ray Tune. Returns the counts of the stage's progress line.
    """
    from .estimator import MarcConfidence

    config = section.model
    if config.backend == "ray" or section.tune:
        ray.join()
    details = {}
    if section.tune:
        from .tune import tune_margin

        # a path, as below: the sweep reads the training rows' runs only, not the whole table
        outcome = tune_margin(annotations, config, refit=True, **section.tune_options.to_dict())
        model = outcome.model or MarcConfidence(outcome.best_config).fit(annotations,
                                                                          source=annotations)
        details["tuned trials"] = len(outcome.trials)
    else:
        # a path: fit reads the scalar columns, then only the training rows' runs (fit.data.prepare)
        model = MarcConfidence(config).fit(annotations, source=annotations)
    model.save(folder)
    if getattr(model, "n_without_verdict_", 0):
        details["left out (no verdict)"] = model.n_without_verdict_
    for name, (read, had) in getattr(model, "rows_sampled_", {}).items():
        details[f"{name} rows sampled"] = f"{read} of {had}"
    return {"n_train": model.n_train_, "n_valid": model.n_valid_, "gamma": round(model.gamma_, 4),
            "kept epoch": f"{model.best_epoch_ + 1} of {len(model.history_)}", **details}


def score_stage(annotations: str, model_folder: str | None, out_path: str) -> dict:
    """Annotations + the learned confidence column (``fit.score.write_scores``)."""
    from .score import write_scores

    rows = write_scores([model_folder] if model_folder is not None else [], annotations, out_path)
    return {"rows": rows}


def fitted_margins(model_folders: dict[str, str | None]) -> dict:
    """Per judge with a fitted model: γ per epoch, the epoch the collapse guard kept and its γ
    (the model's config file)."""
    from ..contracts.model_folder import CONFIG_FILE
    from .bound import bound_reading

    out = {}
    for name, folder in model_folders.items():
        path = join(folder, CONFIG_FILE) if folder else None
        if path is None or not is_file(path):
            continue
        model = json.loads(read_text(path))
        history = model.get("gamma_history") or [h.get("gamma") for h in model.get("history", [])]
        out[name] = {"gamma_history": [float(g) for g in history if g is not None],
                     "gamma": model.get("gamma"), "best_epoch": model.get("best_epoch"),
                     "agreement_map": "agreement_map" in model,
                     "bound": bound_reading(model.get("bound"))}
    return out


def fitted_validation_ids(model_folder: str | None) -> list[str] | None:
    """The ids of a fitted model's validation part (what ``confidence: auto`` reads), or None."""
    from .estimator import CONFIG_FILE

    path = join(model_folder, CONFIG_FILE) if model_folder else None
    if path is None or not is_file(path):
        return None
    return json.loads(read_text(path)).get("valid_ids") or None
