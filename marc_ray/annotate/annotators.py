"""Simulated annotators: N annotators, each K labelled examples drawn from the few-shot pool.

Following Jung et al. (2025) and MARC, the judge is prompted once per annotator j, per non-empty
subset S of that annotator's K examples (up to a configurable size; all of them gives
N·(2^K − 1) runs per order) and per response order, which yields the run layout
``probs[annotator, shot_subset, order]`` of :class:`marc_ray.contracts.RunLayout`.

Annotators are the pool's real annotators when the pool has an ``annotator`` column (so each
simulated annotator carries one human's preferences), else seeded random disjoint groups of
the pool: N pool partitions, not real annotators (single-label data; the report says so). The pool must be disjoint from the judged data by id (it would otherwise leak labels
into calibration); :func:`check_pool_disjoint` refuses overlap.

References
----------
Jung, Brahman, Choi. "Trust or Escalate: LLM Judges with Provable Guarantees for Human
Agreement". ICLR 2025.
Jin, Tao, Yu, Huang. "Margin-Adaptive Confidence Ranking" (MARC). ICML 2026.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..contracts import ContractError, RunLayout, check_pool_disjoint, validate_comparisons
from .config import AnnotateConfig

EXAMPLE_FIELDS = ("id", "instruction", "response_a", "response_b", "human_label")


@dataclass(frozen=True)
class SimulatedAnnotator:
    """One simulated annotator: a name and its K examples (dicts with ``EXAMPLE_FIELDS``)."""

    name: str
    examples: tuple[dict, ...]


def shot_subsets(k_shots: int, max_size: int = 0) -> tuple[tuple[int, ...], ...]:
    """Every non-empty subset of ``range(k_shots)`` of size at most ``max_size`` (0: all).

    Ordered by size, then lexicographically, so the full set (when included) comes last.

    Examples
    --------
    >>> shot_subsets(3)
    ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2))
    >>> len(shot_subsets(5))
    31
    """
    if k_shots < 1:
        raise ValueError(f"k_shots must be >= 1, got {k_shots}")
    limit = max_size or k_shots
    if not 1 <= limit <= k_shots:
        raise ValueError(f"max_size must be in [1, k_shots={k_shots}] or 0, got {max_size}")
    return tuple(subset for size in range(1, limit + 1)
                 for subset in itertools.combinations(range(k_shots), size))


def run_layout(n_annotators: int, k_shots: int,
               max_subset_size: int = AnnotateConfig.max_subset_size,
               orders: tuple[str, ...] = AnnotateConfig.orders) -> RunLayout:
    """The run layout of N annotators × subsets × orders."""
    return RunLayout(n_annotators, shot_subsets(k_shots, max_subset_size), tuple(orders))


def read_pool(table: pa.Table, source: str = "<pool>") -> pa.Table:
    """Validate a few-shot pool: labelled comparisons, ``annotator`` optional.

    Raises
    ------
    ContractError
        An empty pool, a missing label, or any comparison-contract violation.
    """
    if table.num_rows == 0:
        raise ContractError(source, "the few-shot pool is empty",
                            hint="give labelled comparisons to build simulated annotators from")
    has_annotator = "annotator" in table.column_names
    return validate_comparisons(table, source, require_labels=True, pool=has_annotator)


def build_annotators(pool: pa.Table, n_annotators: int, k_shots: int,
                     seed: int = AnnotateConfig.seed,
                     source: str = "<pool>") -> list[SimulatedAnnotator]:
    """Draw N simulated annotators with K examples each from a validated pool.

    Items whose human label is a tie are skipped: an example must show a preference.

    Parameters
    ----------
    pool : pa.Table
        Output of :func:`read_pool`.
    n_annotators, k_shots : int
    seed : int
        Seeds which annotators are chosen and which of their examples.

    Returns
    -------
    list of SimulatedAnnotator, length ``n_annotators``

    Raises
    ------
    ContractError
        Too few annotators with K examples, or a pool too small for N·K examples.
    """
    rng = np.random.default_rng(seed)
    rows = [{name: row.get(name) for name in EXAMPLE_FIELDS + ("annotator",)}
            for row in pool.to_pylist() if row.get("human_label") in ("a", "b")]
    if not rows:
        raise ContractError(source, "the few-shot pool has no item labelled 'a' or 'b'",
                            field="human_label", hint="ties cannot serve as examples")
    if "annotator" in pool.column_names:
        by_annotator: dict[str, list[dict]] = {}
        for row in rows:
            by_annotator.setdefault(str(row["annotator"]), []).append(row)
        eligible = sorted(name for name, items in by_annotator.items() if len(items) >= k_shots)
        if len(eligible) < n_annotators:
            most = max(len(items) for items in by_annotator.values())
            raise ContractError(source, f"k_shots={k_shots} is larger than the examples of most "
                                f"annotators: only {len(eligible)} of {len(by_annotator)} have "
                                f"{k_shots} non-tie examples (the most any has is {most}), "
                                f"{n_annotators} needed", field="annotator",
                                hint="lower k_shots or n_annotators, or drop the annotator column "
                                     "to draw random groups")
        chosen = sorted(rng.choice(len(eligible), size=n_annotators, replace=False))
        annotators = []
        for index in chosen:
            name = eligible[index]
            items = by_annotator[name]
            picks = sorted(rng.choice(len(items), size=k_shots, replace=False))
            annotators.append(SimulatedAnnotator(name, tuple(_example(items[p]) for p in picks)))
        return annotators
    needed = n_annotators * k_shots
    if len(rows) < needed:
        raise ContractError(source, f"k_shots={k_shots} is larger than each annotator's share: "
                            f"{n_annotators} random groups of {k_shots} need {needed} non-tie "
                            f"examples, the pool has {len(rows)}",
                            hint="lower k_shots or n_annotators, or give a larger pool")
    order = rng.permutation(len(rows))[:needed]
    return [SimulatedAnnotator(f"group-{j}", tuple(_example(rows[i])
                                                   for i in order[j * k_shots:(j + 1) * k_shots]))
            for j in range(n_annotators)]


def pool_partition_notes(pool_path: str, judges: list[dict]) -> list[str]:
    """The report's line when the simulated annotators are partitions of a pool without
    annotator ids (single-label data), not real annotators; none otherwise.

    ``judges`` are the run's resolved judge settings (``annotate`` over each cascade entry).
    """
    from ..contracts.io import exists, parquet_schema
    from .config import AnnotateConfig
    from .engines import engine_of

    prompted = [judge for judge in judges if getattr(engine_of(judge), "needs_pool", True)]
    if not prompted or not exists(pool_path) or "annotator" in parquet_schema(pool_path).names:
        return []
    default = AnnotateConfig()
    counts = sorted({int(judge.get("n_annotators", default.n_annotators)) for judge in prompted})
    return [f"{' / '.join(map(str, counts))} pool partitions, not real annotators: the few-shot "
            f"pool has no annotator ids, so each simulated annotator is a seeded random part of "
            f"it, and their disagreement is the judge's sensitivity to its examples, not human "
            f"disagreement."]


def _example(row: dict) -> dict:
    return {name: row[name] for name in EXAMPLE_FIELDS}


__all__ = ["SimulatedAnnotator", "shot_subsets", "run_layout", "read_pool", "build_annotators",
           "check_pool_disjoint", "pool_partition_notes"]
