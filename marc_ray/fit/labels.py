"""Training labels: does the judge's verdict agree with the (real or simulated) human?

*Human mode*: a(x) = 1 when ``pred`` equals the human label (the majority of the votes), with
ties handled by :data:`marc_ray.contracts.TIE_POLICIES` ("drop": tied items are left out;
"disagree": a tie disagrees with any verdict). The share of human votes that back the verdict
is returned as a soft target (``votes_pred / (votes_a + votes_b + votes_tie)``; equal to the
hard label when an item has a single label and no vote counts).

*Simulated mode*: one simulated annotator is the pseudo-human. Its verdict (mean of its
full-shot runs over both orders) becomes ``human_label``, its runs are marked missing so the
features cannot see them, and the verdict ``pred`` and the simulated-annotator heuristic are
recomputed from the remaining annotators (:func:`simulated_view`). Training on this view and
testing on real humans measures how far simulated disagreement transfers to human
disagreement, instead of assuming it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..annotate.assemble import heuristic
from .config import FitConfig
from ..contracts import ContractError, RunLayout, agreement, annotation_schema, layout_of

HELD_OUT_STATUS = "missing: held out as pseudo-human"


def human_labels(table: pa.Table, tie_policy: str = FitConfig.tie_policy,
                 source: str = "<annotations>"
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Agreement labels, the rows kept by the tie policy, and soft targets.

    Returns
    -------
    agree : ndarray of float, shape (n_kept,)
        1.0 agree, 0.0 disagree.
    kept : ndarray of bool, shape (n,)
        Rows the tie policy keeps (and that have a human label).
    soft : ndarray of float, shape (n_kept,)
        Share of human votes backing the verdict, in [0, 1].

    Raises
    ------
    ContractError
        No ``human_label`` column, or no row has a human label.
    """
    if "human_label" not in table.column_names:
        raise ContractError(source, "missing column", field="human_label",
                            hint="human mode needs human labels; use label_mode='simulated'")
    labels = np.asarray(table.column("human_label").to_pylist(), dtype=object)
    pred = np.asarray(table.column("pred").to_pylist(), dtype=object)
    labelled = labels != None  # noqa: E711 (element-wise null test)
    if not labelled.any():
        raise ContractError(source, "no row has a human label", field="human_label",
                            hint="label the items or use label_mode='simulated'")
    agree_sub, kept_sub = agreement(pred[labelled], labels[labelled], tie_policy)
    kept = np.zeros(len(labels), dtype=bool)
    kept[np.flatnonzero(labelled)[kept_sub]] = True
    agree = agree_sub.astype(float)
    soft = agree.copy()
    if all(name in table.column_names for name in ("votes_a", "votes_b", "votes_tie")):
        votes = {k: np.asarray(table.column(f"votes_{k}").to_pylist(), dtype=object)[kept]
                 for k in ("a", "b", "tie")}
        counts = {k: np.array([0 if v is None else v for v in votes[k]], dtype=float) for k in votes}
        total = counts["a"] + counts["b"] + counts["tie"]
        backing = np.where(pred[kept] == "a", counts["a"], counts["b"])
        soft = np.where(total > 0, backing / np.maximum(total, 1), agree)
    return agree, kept, soft


def annotator_runs(layout: RunLayout, annotator: int) -> np.ndarray:
    """Boolean mask of shape (n_runs,): the runs of simulated annotator ``annotator``."""
    mask = np.zeros(layout.n_runs, dtype=bool)
    for s in range(layout.n_subsets):
        for o in range(len(layout.orders)):
            mask[layout.run_index(annotator, s, o)] = True
    return mask


def simulated_view(table: pa.Table, annotator: int, source: str = "<annotations>") -> pa.Table:
    """The table with simulated annotator ``annotator`` turned into the pseudo-human.

    Its runs are marked missing (status :data:`HELD_OUT_STATUS`), ``human_label`` becomes its
    verdict (mean of its full-shot runs, both orders; null when all of them are missing, so the
    item drops out), vote counts are cleared, and ``pred``, ``p_simulated`` and
    ``conf_simulated`` are recomputed from the other annotators.

    Raises
    ------
    ContractError
        ``annotator`` is not in the run layout, or the layout has a single annotator.
    """
    layout: RunLayout = layout_of(table, source)
    if layout.n_annotators < 2:
        raise ContractError(source, "simulated labels need at least 2 simulated annotators "
                            f"(one held out, one left to judge); the layout has {layout.n_annotators}",
                            field="probs")
    if not 0 <= annotator < layout.n_annotators:
        raise ContractError(source, f"held_out_annotator {annotator} is not in 0..{layout.n_annotators - 1}",
                            field="probs")
    n_orders, full = len(layout.orders), layout.full_subset_index
    held = annotator_runs(layout, annotator)
    others_full = [layout.run_index(j, full, o) for j in range(layout.n_annotators)
                   if j != annotator for o in range(n_orders)]
    mine_full = [layout.run_index(annotator, full, o) for o in range(n_orders)]

    rows = table.to_pylist()
    for row in rows:
        probs = np.array([np.nan if v is None else v for v in row["probs"]], dtype=float)
        _, _, pseudo = heuristic(probs[mine_full])
        p_sim, conf_sim, pred_sim = heuristic(probs[others_full])
        probs[held] = np.nan
        row["probs"] = probs.tolist()
        row["status"] = [HELD_OUT_STATUS if h else s for h, s in zip(held, row["status"])]
        if row.get("label_mass") is not None:
            row["label_mass"] = [np.nan if h else m for h, m in zip(held, row["label_mass"])]
        row["human_label"] = pseudo
        row["votes_a"] = row["votes_b"] = row["votes_tie"] = None
        if pred_sim is not None:
            row["pred"] = pred_sim
        row["p_simulated"], row["conf_simulated"] = p_sim, conf_sim
    return pa.Table.from_pylist(rows, schema=annotation_schema(layout)) \
        if set(table.column_names) == set(annotation_schema(layout).names) \
        else pa.Table.from_pylist(rows).replace_schema_metadata(table.schema.metadata)
