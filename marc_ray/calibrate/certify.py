"""The one certify path: every certificate marc_ray writes is made here.

``marc-ray calibrate`` (one judge, ``--by`` groups, ``--cascade``), the pipeline's calibrate
stage and the Python API all call :func:`certify`, which does, once and in this order:

1. **provenance**: the rows that shaped what the certificate relies on (the fitted confidence
   model's training and validation rows, the rows an ``auto`` choice of the measure read, the
   rows a quantile grid was built from) are merged; calibration rows among them are refused
   (``ContractError``: exit 2, one line with the count, the first id and the way out), or, with
   ``exclude_seen``, left out and counted;
2. **the grid check**: each calibrator refuses a grid taken from the calibration scores, with
   the ids (single, cascade and per group alike);
3. **calibration**: :class:`SelectiveCalibrator` (one judge), :class:`CascadeCalibrator`
   (judges cheapest first, δ split across them) or :class:`GroupedCalibrator` (a threshold or a
   cascade per group, δ split across groups, then stages);
4. **binding and digest**: each stage's binding (``contracts.with_binding``: judge, model,
   confidence column and model hash, run layout) and the provenance summary and its digest go
   into the certificate, whose own digest then covers them.

A test (``tests/calibrate/test_certify.py``) enumerates every path to a certificate and checks
that each comes out bound and provenance-checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pyarrow as pa

from ..contracts import BINDING_KEYS, table_hash, with_binding
from ..contracts.provenance import (Provenance, check_unseen, merge_provenance,
                                    provenance_record, provenance_summary)
from .config import CalibrateConfig
from .grid import as_grid

__all__ = ["Stage", "Certified", "certify", "GRID_ROLE"]

GRID_ROLE = "quantile grid: rows it was built from"
DESIGN_ROLE = "design: rows it read"  # the training rows a design (calibrate.design) read


@dataclass
class Stage:
    """One judge of what is certified, cheapest first.

    name : the judge; confidence_name : the confidence column; confidence : shape (n,) floats;
    pred : shape (n,), "a" / "b" / None (no verdict: never accepted); binding : what the stage
    certifies (``contracts.BINDING_KEYS``; missing keys are not bound); provenance : the rows
    that shaped this stage's confidence (its scored file's record, ``contracts.provenance``),
    recorded in the certificate under ``"<name>: <role>"``.
    """

    name: str
    confidence_name: str
    confidence: np.ndarray
    pred: np.ndarray
    binding: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)


@dataclass
class Certified:
    """What :func:`certify` made: one certificate and one calibrator per alpha (in the order
    given), the calibration rows it used and left out, and the counts every closing line states
    ("419 calibration items, 59 ties dropped (policy drop), 360 used"), the same for every kind."""

    certificates: dict
    calibrators: dict
    kept: np.ndarray          # mask over the rows given: True where the row was calibrated on
    n_excluded: int           # rows left out because the provenance saw them (exclude_seen)
    n_calibration: int        # rows calibrated on (kept), ties included
    n_ties_dropped: int       # of those, human ties the tie policy dropped (0 under "disagree")
    n_used: int               # n_calibration - n_ties_dropped: what the guarantee counts


def certify(stages: Sequence[Stage], human_label, ids, *, alpha=CalibrateConfig.alpha,
            delta=CalibrateConfig.delta, grid=None,
            n_grid: int = CalibrateConfig.n_grid, procedure: str = CalibrateConfig.procedure,
            min_n=CalibrateConfig.min_n,
            tie_policy: str = CalibrateConfig.tie_policy, delta_split=CalibrateConfig.delta_split,
            groups=None, by: str | None = None,
            provenance: Provenance | None = None,
            exclude_seen: bool = CalibrateConfig.exclude_seen,
            exclude_flag: str = "exclude_seen=True", hashed: pa.Table | None = None,
            hash_columns: list[str] | None = None, model_hash: str | None = None,
            extra: dict | None = None, source: str = "<calibration data>",
            design: dict | None = None) -> Certified:
    """Certify ``stages`` on the labelled rows ``ids``: the one way to a certificate.

    Parameters
    ----------
    stages : sequence of :class:`Stage`, cheapest first (one: a single judge)
    human_label : array-like of str, shape (n,)
    ids : array-like of str, shape (n,)
        Required: provenance and the grid check are by id.
    alpha : float or sequence of float
        One certificate per value (each its own ``1 - delta`` guarantee).
    delta, grid, n_grid, procedure, min_n, tie_policy
        As for :class:`SelectiveCalibrator`.
    delta_split : "equal" or weights
        Across a cascade's stages (within each group when ``groups`` is given).
    groups : array-like of str, shape (n,), optional
        A threshold (or cascade) per group; ``by`` names the column in the certificate.
    provenance : dict, optional
        ``contracts.provenance`` records of rows that shaped what every stage relies on (the
        ``auto`` choice); each stage's own (``Stage.provenance``) and a quantile grid's source
        ids are added to it.
    exclude_seen : bool, default=CalibrateConfig.exclude_seen
        Leave out calibration rows the provenance saw instead of refusing them;
        ``exclude_flag`` names the switch in the refusal's hint.
    hashed, hash_columns : the calibration table and the columns whose hash is the
        certificate's ``data_hash`` (only the kept rows are hashed); default: the arrays.
    model_hash, extra : recorded in the certificate.
    source : names the data in errors.
    design : dict, optional
        Choose the test's design on training rows (``calibrate.design.design_stages``):
        ``{"train": {"confidence": (m, L), "pred": (m, L), "human_label": (m,), "ids": (m,)},
        **options}`` (``costs``, ``order``, ``delta_split``, ``drop``, ``probability``). The
        judges kept and their order, δ's split and each stage's grid and start come from those
        rows; they join the provenance ("design: rows it read"), so a calibration row among them
        is refused like any other. The design is recorded in the certificate (``extra.design``).
        One alpha at a time. With ``groups``: a design per group on that group's training rows
        (``train["groups"]``; ``calibrate.group_design``), recorded in each group's entry.

    Returns
    -------
    Certified
        With the counts every summary states (``n_calibration``, ``n_ties_dropped``,
        ``n_used``), the same for every kind of certificate.

    Raises
    ------
    ContractError
        Calibration rows that the provenance saw (without ``exclude_seen``), or none left.
    ValueError
        Bad parameters or inputs (from the calibrators), a grid built from calibration rows.
    """
    human_label = np.asarray(human_label, dtype=object).ravel()
    ids = np.asarray(ids, dtype=object).ravel()
    if not stages:
        raise ValueError("certify needs at least one stage")
    if ids.size != human_label.size:
        raise ValueError(f"ids ({ids.size}) and human_label ({human_label.size}) differ in length")
    grid = as_grid(grid, n_grid)
    grid_rows = ({GRID_ROLE: provenance_record(sorted(grid.source_ids))}
                 if grid.kind == "quantile" and grid.source_ids else {})
    designed = None
    if design is not None:
        given_names = [s.name for s in stages]
        designed, stages = _design(stages, design, len(ids), alpha, delta, n_grid, tie_policy,
                                   groups)
        grid_rows[DESIGN_ROLE] = provenance_record(sorted(str(i) for i in design["train"]["ids"]))
    per_stage = [{f"{s.name}: {role}": record for role, record in (s.provenance or {}).items()}
                 for s in stages]
    provenance = merge_provenance(provenance, grid_rows, *per_stage)
    kept = check_unseen(provenance, ids, source, exclude_seen=exclude_seen, flag=exclude_flag)
    n_excluded = int((~kept).sum())
    ids, human_label = ids[kept], human_label[kept]
    # every stage's column of the calibration rows kept: (n, L), cheapest first
    confidence = np.stack([np.asarray(s.confidence, dtype=float).ravel()[kept] for s in stages], axis=1)
    pred = np.stack([np.asarray(s.pred, dtype=object).ravel()[kept] for s in stages], axis=1)
    stage_names = [s.name for s in stages]
    groups = None if groups is None else np.asarray(groups, dtype=object).ravel()[kept]
    alphas = [alpha] if np.ndim(alpha) == 0 else list(alpha)
    settings = dict(delta=delta, grid=grid, n_grid=n_grid, procedure=procedure, min_n=min_n,
                    tie_policy=tie_policy)
    if hashed is not None:
        data_hash = table_hash(hashed.filter(pa.array(kept)) if n_excluded else hashed, hash_columns)
    else:
        data_hash = table_hash(_arrays_table(ids, human_label, stage_names, confidence, pred))
    names = [s.confidence_name for s in stages]
    record = dict(provenance_summary(provenance), n_excluded=n_excluded)
    extra = dict(extra or {})

    if designed is not None and groups is not None:  # a design per group (calibrate.group_design)
        settings["group_designs"] = designed
        extra["design"] = {"per_group": True, "recorded": "in each group's design field"}
    elif designed is not None:
        chosen, grid_designs = designed
        extra["design"] = {**chosen.record(given_names),
                           "stage_grids": [g.record() for g in grid_designs]}
        if len(stages) == 1:  # one judge kept: its designed grid and start
            settings.update(grid=grid_designs[0].grid, min_n=grid_designs[0].min_n)
        else:
            settings["stage_grids"] = [(g.grid, g.min_n) for g in grid_designs]
            delta_split = chosen.delta_weights
    # one calibrator per alpha (one judge: one for every alpha, the data counted once), all
    # three called the same way
    calibrators = _calibrators(alphas, len(stages), groups is not None, settings, delta_split, by)
    grouping = {} if groups is None else {"groups": groups.astype(str)}
    for calibrator in {id(c): c for c in calibrators.values()}.values():
        calibrator.calibrate(confidence, pred, human_label, ids=ids, names=stage_names, **grouping)
    certificates = {}
    for value, calibrator in calibrators.items():
        certificate = calibrator.certificate(data_hash, confidence_names=names,
                                             model_hash=model_hash, extra=extra, alpha=value)
        certificate = with_binding(certificate, [_binding(s) for s in stages])
        certificate.provenance = record
        certificates[value] = certificate
    first = calibrators[alphas[0]]
    return Certified(certificates, calibrators, kept, n_excluded, n_calibration=first.n_calibration_,
                     n_ties_dropped=first.n_ties_dropped_, n_used=first.n_used_)


def _calibrators(alphas: list, n_stages: int, grouped: bool, settings: dict, delta_split,
                 by: str | None) -> dict:
    """{alpha: calibrator}: per group (``GroupedCalibrator``), a cascade (``CascadeCalibrator``)
    or one judge (``SelectiveCalibrator``, one calibrator for every alpha)."""
    from .calibrator import SelectiveCalibrator
    from .cascade import CascadeCalibrator
    from .groups import GroupedCalibrator

    if grouped:
        return {a: GroupedCalibrator(alpha=a, stage_split=delta_split, by=by or "group", **settings)
                for a in alphas}
    if n_stages > 1:
        return {a: CascadeCalibrator(alpha=a, delta_split=delta_split, **settings) for a in alphas}
    single = SelectiveCalibrator(alpha=alphas if len(alphas) > 1 else alphas[0], **settings)
    return dict.fromkeys(alphas, single)


def _design(stages, design: dict, n_calibration: int, alpha, delta: float, n_grid: int,
            tie_policy: str, groups):
    """``certify``'s ``design``: the judges kept, in order, and each stage's designed grid."""
    from .design import design_stages

    if np.ndim(alpha) != 0:
        raise ValueError("a design chosen on training rows certifies one alpha at a time")
    options = {k: v for k, v in design.items() if k != "train"}
    train = design["train"]
    if train.get("ids") is None or len(train["human_label"]) == 0:
        raise ValueError("a design needs labelled training rows with their ids")
    if groups is not None:  # every group keeps every stage, in order: only grids and splits vary
        from .group_design import design_groups
        from .groups import group_deltas

        groups = np.asarray([str(g) for g in groups], dtype=object)
        deltas = group_deltas(sorted(set(groups.tolist())), delta)
        return design_groups(train, groups, float(alpha), deltas, tie_policy=tie_policy,
                             names=[s.name for s in stages], n_grid=n_grid, **options), stages
    chosen, grids = design_stages(train, n_calibration, float(alpha), float(delta), n_grid=n_grid,
                                  tie_policy=tie_policy, **options)
    return (chosen, grids), [stages[j] for j in chosen.order]


def _binding(stage: Stage) -> dict:
    """A stage's binding: what it was given; a key it was not given at all (the Python API
    without a binding) binds the stage's name and confidence column. A key given as None (the
    data does not show it) stays unbound."""
    binding = {key: stage.binding.get(key) for key in BINDING_KEYS}
    for key, value in (("judge", stage.name), ("confidence", stage.confidence_name)):
        if key not in stage.binding:
            binding[key] = value
    return binding


def _arrays_table(ids, human_label, names, confidence, pred) -> pa.Table:
    columns = {"id": pa.array([str(i) for i in ids], pa.string()),
               "human_label": pa.array(human_label.tolist(), pa.string())}
    for l, name in enumerate(names):
        columns[f"pred:{name}"] = pa.array(pred[:, l].tolist(), pa.string())
        columns[f"conf:{name}"] = pa.array(confidence[:, l])
    return pa.table(columns)
