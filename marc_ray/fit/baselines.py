"""The four confidence measures, scored and compared the same way.

=============  ===================  ==================================================
measure        column               what it is
=============  ===================  ==================================================
predictive     ``conf_predictive``  zero-shot probability, both orders averaged
simulated      ``conf_simulated``   Jung et al.: mean of the full-shot runs over
                                    annotators and orders
vanilla        ``conf_vanilla``     the learned MLP with a fixed margin, no penalty
marc           ``conf_marc``        MARC: adaptive margin from the bound
=============  ===================  ==================================================

Typical use on a replayed data set (one call: fit both learned measures on the training and
validation splits, then compare all four on the held-out splits)::

    from marc_ray.fit import FitConfig
    from marc_ray.fit.baselines import compare_measures
    rows = compare_measures("annotations.parquet", FitConfig(), test_splits=("test",))
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa

from ..contracts import ContractError
from .config import FitConfig
from .data import load_annotations
from ..metrics import auroc
from .labels import human_labels

MEASURES: dict[str, str] = {
    "predictive": "conf_predictive",
    "simulated": "conf_simulated",
    "vanilla": "conf_vanilla",
    "marc": "conf_marc",
}


def confidence_measures(table: pa.Table, models: Sequence = ()) -> dict[str, np.ndarray]:
    """Every available measure for every row: the heuristic columns, existing learned columns,
    and the scores of ``models`` (fitted ``MarcConfidence``), keyed by measure name."""
    out = {}
    for name, column in MEASURES.items():
        if column in table.column_names:
            out[name] = np.asarray(table.column(column).to_pylist(), dtype=float)
    for model in models:
        out[model.config.variant] = model.score(table)
    return out


def evaluate_measures(table: pa.Table, measures: dict[str, np.ndarray], *,
                      tie_policy: str = FitConfig.tie_policy,
                      splits: Sequence[str] | None = ("test",),
                      source: str = "<annotations>") -> list[dict]:
    """Held-out ranking risk and AUROC of each measure.

    Parameters
    ----------
    table : the annotation table ``measures`` were computed on (same row order)
    measures : dict name → ndarray of shape (n_rows,)
    tie_policy : {"drop", "disagree"}
    splits : the ``split`` values evaluated on (None: every row)

    Returns
    -------
    list of dict : one per measure: ``measure``, ``n``, ``n_disagree``, ``ranking_risk``, ``auroc``.
    """
    rows = np.ones(table.num_rows, dtype=bool)
    if splits is not None:
        if "split" not in table.column_names:
            raise ContractError(source, "missing column", field="split",
                                hint="pass splits=None to evaluate on every row")
        rows = np.array([s in splits for s in table.column("split").to_pylist()])
        if not rows.any():
            raise ContractError(source, f"no row is in the evaluation splits {list(splits)}",
                                field="split")
    agree, kept, _ = human_labels(table.filter(pa.array(rows)), tie_policy, source)
    results = []
    for name, values in measures.items():
        score = np.asarray(values, dtype=float)[rows][kept]
        value = auroc(score, agree >= 0.5)
        results.append({"measure": name, "n": int(len(agree)), "n_disagree": int((agree < 0.5).sum()),
                        "ranking_risk": 1.0 - value, "auroc": value})
    return results


def compare_measures(annotations, config: FitConfig | None = None, *,
                     test_splits: Sequence[str] = ("test",)) -> list[dict]:
    """Fit vanilla and MARC on the training splits, evaluate all four measures on ``test_splits``."""
    from .estimator import MarcConfidence

    config = config or FitConfig()
    table, source = load_annotations(annotations)
    models = [MarcConfidence(config.replace(variant=v)).fit(table, source=source)
              for v in ("vanilla", "marc")]
    measures = confidence_measures(table, models)
    return evaluate_measures(table, measures, tie_policy=config.tie_policy, splits=test_splits,
                             source=source)


def format_measures(rows: list[dict]) -> str:
    """A Markdown table of :func:`evaluate_measures` rows."""
    lines = ["| measure | n | disagreements | ranking risk | AUROC |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['measure']} | {row['n']} | {row['n_disagree']} | "
                     f"{row['ranking_risk']:.3f} | {row['auroc']:.3f} |")
    return "\n".join(lines)
