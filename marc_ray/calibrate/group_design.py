"""Per-group designs: ``calibrate.design`` with ``calibrate.by``.

A grouped certificate certifies each group ``g`` at its own ``delta_g`` on that group's
calibration items alone (``calibrate/groups.py``); with a design, each group's grid, start and
(for a cascade) δ split across its stages are chosen on **that group's training rows**
(:func:`~marc_ray.calibrate.design.design_stages` at ``delta_g`` and the group's calibration
count), so a group whose confidences pile up near 1 and one whose do not each get the start
their own rows support. The guarantee is untouched for the same reason as for one design: the
order of each group's tests is fixed before its calibration labels are read.

What is not chosen per group: the judges' order and which judges are kept. Every group is
routed through the same stages in the same order (``route_by_group``), so a per-group design
keeps every judge in the given order; a judge a group's rows say certifies little there gets a
small share of that group's δ instead.

A group with fewer than :data:`~marc_ray.calibrate.design.MIN_TRAINING_ROWS` usable training
rows (or none) keeps the fixed procedure (the run's grid and minimum-n rule, δ split equally),
and its certificate entry says so (``design.source``).
"""

from __future__ import annotations

import numpy as np

from .config import CalibrateConfig
from .design import MIN_TRAINING_ROWS, design_stages

__all__ = ["design_groups", "design_and_calibrate_groups", "grouped_outcome", "FALLBACK"]

FALLBACK = "fixed procedure: too few training rows in this group"


def design_groups(train: dict, calibration_groups, alpha: float, deltas: dict, *,
                  tie_policy: str = CalibrateConfig.tie_policy, names=None, **options) -> dict:
    """Each calibration group's design, chosen on its own training rows.

    Parameters
    ----------
    train : dict of ``confidence`` (m, L), ``pred`` (m, L), ``human_label`` (m,), ``ids``
        (m,) and ``groups`` (m,): the training rows and their groups
    calibration_groups : array-like, shape (n,): each calibration item's group (a count per
        group is read, no label)
    deltas : group -> delta_g (``groups.group_deltas``)
    names : the judges' names, for the records (default "0", "1", ...)
    options : for :func:`design_stages` (``costs``, ``delta_split``, ``probability``,
        ``n_grid``); ``order`` must be "given" and ``drop`` False (module docstring)

    Returns
    -------
    dict group -> ``{"delta_split": weights or "equal", "stage_grids": [(grid, min_n)] or None,
    "record": dict}`` (``stage_grids`` None: the fixed procedure, too few training rows)
    """
    if options.get("order", "given") != "given" or options.get("drop", False):
        raise ValueError("a per-group design keeps every judge in the given order (every group is "
                         "routed through the same stages): pass order='given', drop=False")
    options = {**options, "order": "given", "drop": False}
    if train.get("groups") is None:
        raise ValueError("a per-group design needs the training rows' groups (train['groups'])")
    train_groups = np.asarray([None if g is None else str(g) for g in train["groups"]], dtype=object)
    calibration_groups = np.asarray([str(g) for g in calibration_groups], dtype=object)
    out = {}
    for group, delta_g in deltas.items():
        rows = train_groups == group
        n_usable = _usable_rows(train, rows, tie_policy)
        n_calibration = int((calibration_groups == group).sum())
        if n_usable < MIN_TRAINING_ROWS or n_calibration == 0:
            out[group] = {"delta_split": "equal", "stage_grids": None,
                          "record": {"source": FALLBACK, "training_rows": int(rows.sum()),
                                     "usable_training_rows": n_usable,
                                     "min_training_rows": MIN_TRAINING_ROWS}}
            continue
        part = {key: np.asarray(value)[rows] for key, value in train.items()
                if key in ("confidence", "pred", "human_label", "ids")}
        chosen, grids = design_stages(part, n_calibration, alpha, float(delta_g),
                                      tie_policy=tie_policy, **options)
        out[group] = {"delta_split": chosen.delta_weights,
                      "stage_grids": [(g.grid, g.min_n) for g in grids],
                      "record": {"source": "training rows of this group",
                                 "training_rows": int(rows.sum()),
                                 **chosen.record(list(names) if names is not None
                                                 else [str(j) for j in range(len(chosen.order))]),
                                 "stage_grids": [g.record() for g in grids]}}
    return out


def _usable_rows(train: dict, rows: np.ndarray, tie_policy: str) -> int:
    from ..contracts import agreement

    human = np.asarray(train["human_label"], dtype=object)[rows]
    _, kept = agreement(np.full(human.size, "a", dtype=object), human, tie_policy)
    return int(kept.sum())


def design_and_calibrate_groups(train: dict, calibration: dict, alpha: float, delta: float, *,
                                tie_policy: str = CalibrateConfig.tie_policy,
                                n_grid: int = CalibrateConfig.n_grid, fixed: bool = False,
                                **options):
    """The whole per-group procedure (what the validity study repeats): the designs on
    ``train`` (:func:`design_groups`), then a :class:`GroupedCalibrator` on ``calibration``
    (the same keys, ``groups`` included), each group on its own design. ``fixed``: no design
    (every group on the fixed grid, δ split equally; ``train`` unused). Returns the fitted
    calibrator."""
    from .groups import GroupedCalibrator, group_deltas

    groups = np.asarray([str(g) for g in calibration["groups"]], dtype=object)
    deltas = group_deltas(sorted(set(groups.tolist())), delta)
    designs = None if fixed else design_groups(train, groups, alpha, deltas, tie_policy=tie_policy,
                                               n_grid=n_grid, **options)
    confidence = np.asarray(calibration["confidence"], dtype=float)
    pred = np.asarray(calibration["pred"], dtype=object)
    calibrator = GroupedCalibrator(alpha=alpha, delta=delta, n_grid=n_grid, tie_policy=tie_policy,
                                   group_designs=designs)
    calibrator.calibrate(confidence, pred, calibration["human_label"], groups=groups,
                         ids=calibration.get("ids"),
                         names=[str(j) for j in range(confidence.shape[1])])
    return calibrator


def grouped_outcome(calibrator, data: dict, alpha: float, tie_policy: str = CalibrateConfig.tie_policy) -> dict:
    """How a grouped certificate does on labelled items: coverage, and success when *every*
    group's agreement on its decided items is at least 1 - alpha (the simultaneous guarantee;
    a group deciding nothing succeeds)."""
    from ..contracts import agreement

    groups = np.asarray([str(g) for g in data["groups"]], dtype=object)
    routing = calibrator.route(np.asarray(data["confidence"], dtype=float),
                               np.asarray(data["pred"], dtype=object), groups=groups)
    human = np.asarray(data["human_label"], dtype=object)
    success = True
    for group in set(groups.tolist()):
        decided = routing.accepted & (groups == group)
        agree, _ = agreement(routing.verdict[decided], human[decided], tie_policy)
        success &= bool(agree.size == 0 or agree.sum() >= (1 - alpha) * agree.size - 1e-9)
    return {"coverage": float(routing.accepted.mean()), "success": success, "expected_cost": None}
