"""Generated annotation files where the heuristic confidence is not monotone in risk.

The failure MARC targets: the simulated-annotator heuristic (mean of the full-shot runs) is
most confident on items where humans often disagree with the judge. Here a share of items are
*traps*: every annotator's runs with many shots confidently back the verdict, but the runs with
one or two shots lean the other way (the verdict is an artefact of the examples, not of the
item), and humans disagree with the verdict most of the time. The remaining *normal* items are
monotone: the stronger the runs back the verdict, the likelier humans agree. A model that sees
the whole run vector can learn the trap pattern; the heuristic cannot.

Used by the tests and benchmarks; written with the annotate stage's own row builder
(:func:`marc_ray.annotate.assemble.annotation_row`), so the files are real annotation files.
"""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa

from ..annotate.assemble import annotation_row, annotation_table
from ..annotate.engine import RunResult
from ..contracts import RunLayout


def all_subsets_layout(n_annotators: int = 5, n_shots: int = 5) -> RunLayout:
    """Every non-empty subset of the K shots (by size, then lexicographic): MARC's layout."""
    subsets = tuple(c for size in range(1, n_shots + 1)
                    for c in itertools.combinations(range(n_shots), size))
    return RunLayout(n_annotators, subsets)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def trap_annotations(n_items: int = 1500, *, layout: RunLayout | None = None, seed: int = 0,
                     trap_share: float = 0.3, missing_rate: float = 0.02,
                     splits: dict[str, float] | None = None, judge: str = "synthetic"
                     ) -> pa.Table:
    """An annotation table with trap items (see the module docstring).

    Parameters
    ----------
    n_items : int
    layout : RunLayout, default=all_subsets_layout(5, 5)
    seed : int
    trap_share : float
        Share of trap items.
    missing_rate : float
        Share of runs recorded as missing (exercises the mask channel).
    splits : dict split name → share, default={"train": 0.6, "valid": 0.2, "test": 0.2}
    judge : str

    Returns
    -------
    pyarrow.Table in the annotation schema, with extra column ``is_trap`` dropped (the truth is
    only in the human labels).
    """
    layout = layout or all_subsets_layout()
    splits = splits or {"train": 0.6, "valid": 0.2, "test": 0.2}
    rng = np.random.default_rng(seed)
    names = list(splits)
    shares = np.array([splits[n] for n in names], dtype=float)
    sizes = np.array([len(s) for s in layout.subsets])
    small = sizes <= max(1, int(sizes.max()) // 2)  # the runs with few shots
    rows = []
    for index in range(n_items):
        human = "a" if rng.random() < 0.5 else "b"
        trap = rng.random() < trap_share
        if trap:
            # many-shot runs confidently back the verdict, few-shot runs lean against it
            mu_subset = np.where(small, -1.0, 3.5)
            correct = rng.random() < 0.15
            mu_zero = rng.normal(0.0, 1.0)
        else:
            strength = rng.uniform(0.0, 3.0)
            mu_subset = np.full(layout.n_subsets, strength)
            correct = rng.random() < 0.5 + 0.45 * np.tanh(strength)
            mu_zero = 0.5 * strength
        verdict = human if correct else ("b" if human == "a" else "a")
        shift = rng.normal(0.0, 0.4, size=(layout.n_annotators, 1))  # annotator's own lean
        p_verdict = _sigmoid(mu_subset[None, :] + shift
                             + rng.normal(0.0, 0.5, size=(layout.n_annotators, layout.n_subsets)))
        p_a = p_verdict if verdict == "a" else 1.0 - p_verdict        # (annotators, subsets)
        p_first = np.stack([p_a, 1.0 - p_a], axis=-1).reshape(-1)     # flat run order, ba mapped
        missing = rng.random(layout.n_runs) < missing_rate
        mass = rng.uniform(0.6, 1.0, size=layout.n_runs)
        results = {run: RunResult.missing("synthetic gap") if missing[run]
                   else RunResult(float(p_first[run]), float(mass[run]))
                   for run in range(layout.n_runs)}
        for o, run in enumerate((-1, -2)):
            p_verdict = float(_sigmoid(mu_zero + rng.normal(0, 0.5)))
            p_a = p_verdict if verdict == "a" else 1.0 - p_verdict
            results[run] = RunResult(p_a if o == 0 else 1.0 - p_a, 1.0)
        carried = {"human_label": human, "votes_a": int(human == "a"), "votes_b": int(human == "b"),
                   "votes_tie": 0, "split": names[int(rng.choice(len(names), p=shares / shares.sum()))],
                   "group": f"g{index}"}
        rows.append(annotation_row(f"item-{index}", judge, layout, results, carried))
    return annotation_table(rows, layout)
