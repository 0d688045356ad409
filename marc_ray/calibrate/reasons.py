"""A reason in plain words for every routing decision (the ``reason`` column of decisions).

:func:`explain` is pure and vectorised: from the routing outcome (deciding stage per item) and
what it was decided on (each stage's confidence, verdict and the item's certified thresholds)
it returns a short ``kind`` code per item (for grouping in a report) and the ``reason``
sentence. The kinds and their sentences, checked in that order for an escalated item:

========================  ==================================================================
kind                      reason
========================  ==================================================================
``unseen_group``          group 'legal' was not in the calibration set (an item with no
                          group value: "the item has no group value, and every certified
                          threshold is for a group")
``abstained``             the certificate abstained: no threshold was certified (group: legal);
                          in a cascade whose last stage certified nothing: "every stage
                          escalated; last stage 2 (gpt-4) certified nothing (no threshold
                          passed), so it decides no item"
``no_verdict``            no usable verdict: 3 of 20 runs unreadable
``below_threshold``       confidence 0.61 is below this judge's certified threshold 0.83
                          (group: coding)
``accepted``              confidence 0.91 is at or above this judge's certified threshold 0.83
``accepted_first_stage``  decided by stage 1 (llama): confidence 0.91 is at or above its
                          certified threshold 0.83
``accepted_later_stage``  decided by stage 2 (gpt-4) after stage 1 escalated
========================  ==================================================================

The " (group: X)" suffix appears on threshold reasons when groups are given. In a cascade an
escalated item's reason is prefixed "every stage escalated; last stage 2 (gpt-4): " and describes
that stage (a report's confidence and run columns beside it describe the same stage). Numbers are printed with two decimals, or four when two would print a
confidence below its threshold as equal to it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["explain", "count_unreadable", "KINDS", "NOT_RUN"]

KINDS = ("accepted", "accepted_first_stage", "accepted_later_stage", "below_threshold",
         "no_verdict", "unseen_group", "abstained")


NOT_RUN = "missing: not run"  # a run's status when the data never had it (annotate.assemble)


def count_unreadable(probs, status=None) -> tuple[np.ndarray, np.ndarray]:
    """Unreadable runs per item: NaN or null entries of each row's run vector ``probs``.

    A run the data never had (its ``status`` is "missing: not run": an order or an annotator a
    replayed data set does not record) is neither unreadable nor a run: with ``status`` it is
    left out of both counts, so "3 of 10 runs unreadable" counts only runs that were made.

    Parameters
    ----------
    probs : pyarrow ListArray / ChunkedArray, or sequence of sequences of float
    status : pyarrow ListArray / ChunkedArray of str, or sequence of sequences, optional
        Each run's status ("ok", "missing: <reason>"), aligned with ``probs``.

    Returns
    -------
    n_unreadable, n_runs : ndarray of int, shape (n,)
    """
    import pyarrow.compute as pc

    probs = _list_array(probs, "float")
    lengths = pc.list_value_length(probs).fill_null(0).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(probs)
    parents = pc.list_parent_indices(probs).to_numpy(zero_copy_only=False)
    bad = pc.or_kleene(pc.is_null(values), pc.is_nan(values)).fill_null(True)
    bad = bad.to_numpy(zero_copy_only=False)
    if status is not None:
        not_run = _not_run_flags(status)
        bad = bad & ~not_run
        lengths = lengths - np.bincount(parents[not_run], minlength=len(probs))
    return np.bincount(parents[bad], minlength=len(probs)).astype(np.int64), lengths.astype(np.int64)


def _list_array(values, kind: str):
    """A pyarrow ListArray of floats or strings from Arrow or nested Python sequences."""
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, (pa.ListArray, pa.LargeListArray)):
        return values
    if kind == "float":
        return pa.array([[None if v is None else float(v) for v in row] for row in values],
                        pa.list_(pa.float64()))
    return pa.array([list(row) for row in values], pa.list_(pa.string()))


def _not_run_flags(status) -> np.ndarray:
    """Per run (flattened, in row order): True where the status says the run was never made."""
    import pyarrow.compute as pc

    flat = pc.list_flatten(_list_array(status, "string"))
    return pc.equal(flat, NOT_RUN).fill_null(False).to_numpy(zero_copy_only=False)


def _numbers(confidence: np.ndarray, threshold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Format confidence and threshold; four decimals where two would print "0.83 is below 0.83"."""
    two_c = np.char.mod("%.2f", confidence)
    two_t = np.char.mod("%.2f", threshold)
    clash = (two_c == two_t) & (confidence < threshold)
    four_c = np.char.mod("%.4f", confidence)
    four_t = np.char.mod("%.4f", threshold)
    return np.where(clash, four_c, two_c), np.where(clash, four_t, two_t)


def explain(stage, confidence, pred, thresholds, stage_names: Sequence[str], groups=None,
            unseen=None, runs_unreadable=None, runs_total=None) -> tuple[np.ndarray, np.ndarray]:
    """The kind and plain-words reason of every item's routing decision.

    Parameters
    ----------
    stage : array-like of int, shape (n,)
        Deciding stage (0-based), -1 when escalated (``apply.route`` / ``route_by_group``).
    confidence : array-like of float, shape (n,) or (n, L)
    pred : array-like of object, shape (n,) or (n, L)
        Each stage's verdict ("a" / "b"; None: no usable verdict).
    thresholds : array-like of float, shape (L,) or (n, L)
        The certified thresholds that applied to each item (its group's, for a per-group
        certificate; ``inf``: that stage certified nothing).
    stage_names : sequence of str, length L
    groups : array-like of str, shape (n,), optional
        Adds " (group: X)" to threshold reasons, and names unseen groups.
    unseen : array-like of bool, shape (n,), optional
        The item's group was not in the calibration set.
    runs_unreadable, runs_total : array-like of int, shape (n,) or (n, L), optional
        From :func:`count_unreadable`; without them the no-verdict reason omits the counts.

    Returns
    -------
    kind : ndarray of str, shape (n,)   (one of ``KINDS``)
    reason : ndarray of str, shape (n,)
    """
    confidence = np.asarray(confidence, dtype=float)
    pred = np.asarray(pred, dtype=object)
    if confidence.ndim == 1:
        confidence, pred = confidence[:, None], pred[:, None]
    n, n_stages = confidence.shape
    stage = np.asarray(stage, dtype=np.int64).ravel()
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=float), (n, n_stages))
    if stage.size != n or pred.shape != (n, n_stages) or len(stage_names) != n_stages:
        raise ValueError(f"stage ({stage.size},), confidence {confidence.shape}, pred {pred.shape} "
                         f"and {len(stage_names)} stage names must describe the same items and stages")
    names = np.asarray(list(stage_names), dtype=object)
    unseen = np.zeros(n, bool) if unseen is None else np.asarray(unseen, dtype=bool).ravel()
    group_text = np.full(n, "", dtype=object)
    if groups is not None:
        groups = np.asarray(groups, dtype=object).ravel()
        group_text = np.array([f" (group: {g})" for g in groups], dtype=object)

    rows = np.arange(n)
    decided = stage >= 0
    # the stage each reason talks about: the deciding stage, or the last one when escalated
    at = np.where(decided, stage, n_stages - 1)
    conf_at, thr_at, pred_at = confidence[rows, at], thresholds[rows, at], pred[rows, at]
    conf_text, thr_text = _numbers(np.nan_to_num(conf_at, nan=0.0), np.where(np.isinf(thr_at), 0.0, thr_at))
    name_at = names[at]
    stage_no = (at + 1).astype(str).astype(object)

    kind = np.full(n, "below_threshold", dtype=object)
    reason = ("confidence " + conf_text.astype(object) + " is below this judge's certified threshold "
              + thr_text.astype(object) + group_text)
    no_verdict = ~np.isin(pred_at, ("a", "b"))
    if runs_unreadable is not None and runs_total is not None:
        bad = np.asarray(runs_unreadable).reshape(n, -1)
        total = np.asarray(runs_total).reshape(n, -1)
        column = np.minimum(at, bad.shape[1] - 1)
        counts = (": " + bad[rows, column].astype(str).astype(object) + " of "
                  + total[rows, column].astype(str).astype(object) + " runs unreadable")
    else:
        counts = np.full(n, " from the judge", dtype=object)
    kind = np.where(no_verdict, "no_verdict", kind)
    reason = np.where(no_verdict, "no usable verdict" + counts, reason)
    # a stage that certified nothing (λ̂ = +inf) has no threshold to quote: say so, never "0.00"
    stage_abstained = np.isinf(thr_at) & ~decided
    kind = np.where(stage_abstained, "abstained", kind)
    reason = np.where(stage_abstained, "stage " + stage_no + " (" + name_at + ") certified nothing "
                      "(no threshold passed), so it decides no item" + group_text, reason)
    abstained = np.all(np.isinf(thresholds), axis=1)
    kind = np.where(abstained, "abstained", kind)
    reason = np.where(abstained, "the certificate abstained: no threshold was certified" + group_text,
                      reason)
    if n_stages > 1:  # an escalation in a cascade is described at its last stage, named
        prefix = "every stage escalated; last stage " + stage_no + " (" + name_at + "): "
        reason = np.where(~abstained & ~stage_abstained, prefix + reason, reason)
        reason = np.where(stage_abstained & ~abstained, "every stage escalated; last " + reason, reason)
    if groups is not None:
        kind = np.where(unseen, "unseen_group", kind)
        reason = np.where(unseen, "group '" + groups.astype(str).astype(object)
                          + "' was not in the calibration set", reason)
        no_group = unseen & np.equal(groups, None)
        reason = np.where(no_group, "the item has no group value, and every certified "
                          "threshold is for a group", reason)

    accepted_text = ("confidence " + conf_text.astype(object) + " is at or above this judge's "
                     "certified threshold " + thr_text.astype(object) + group_text)
    if n_stages == 1:
        kind = np.where(decided, "accepted", kind)
        reason = np.where(decided, accepted_text, reason)
    else:
        first = decided & (stage == 0)
        later = decided & (stage > 0)
        kind = np.where(first, "accepted_first_stage", kind)
        reason = np.where(first, "decided by stage 1 (" + name_at + "): confidence "
                          + conf_text.astype(object) + " is at or above its certified threshold "
                          + thr_text.astype(object) + group_text, reason)
        earlier = np.where(stage > 1, "stages 1-" + (stage).astype(str).astype(object), "stage 1")
        kind = np.where(later, "accepted_later_stage", kind)
        reason = np.where(later, "decided by stage " + stage_no + " (" + name_at + ") after "
                          + earlier + " escalated", reason)
    return kind.astype(str), reason.astype(str)
