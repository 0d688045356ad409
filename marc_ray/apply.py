"""Apply a certificate to new items: a verdict, or "escalate", per item, and a drift check.

A certificate (``marc_ray.contracts.Certificate``) fixes, for each judge of a cascade in order
of cost, a confidence measure and a threshold λ̂ (``inf`` when nothing passed). An item is
decided by the first judge whose confidence on it reaches that judge's threshold; an item no
judge is confident enough about is escalated (to humans). The guarantee covers exactly this
rule on items drawn like the calibration set, so :func:`apply_certificate` also compares the
new items' confidences with the calibration set's (``report.diagnostics.drift``).

Data in: a scored table (``marc-ray score`` output or the pipeline's ``score/scores.parquet``)
or an annotation table with the needed confidence column(s). One row per item, or, for a
cascade, one row per (item, judge) with a ``judge`` column naming the certificate's judges.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .contracts import Certificate, ContractError, read_table, write_json_atomic, write_table_atomic

ESCALATE = "escalate"


@dataclass
class Routing:
    """Where each item went.

    Attributes
    ----------
    stage : ndarray of int, shape (n,)
        Index of the deciding stage, -1 when escalated.
    verdict : ndarray of object, shape (n,)
        "a", "b" or "escalate".
    """

    stage: np.ndarray
    verdict: np.ndarray

    @property
    def accepted(self) -> np.ndarray:
        return self.stage >= 0


def stage_thresholds(certificate: Certificate) -> np.ndarray:
    """The thresholds λ̂ of the certificate's stages, shape (n_stages,); ``inf``: nothing accepted."""
    return np.array([float(stage["threshold"]) for stage in certificate.stages], dtype=float)


def route(certificate: Certificate, confidence: np.ndarray, pred: np.ndarray) -> Routing:
    """Route items through the certificate's stages.

    Parameters
    ----------
    certificate : Certificate
    confidence : ndarray of shape (n, n_stages)
        Each stage's confidence on each item; NaN (not judged, unreadable) is never accepted.
    pred : ndarray of object, shape (n, n_stages)
        Each stage's verdict, "a" or "b" (None: no verdict, never accepted).

    Returns
    -------
    Routing
    """
    thresholds = stage_thresholds(certificate)
    confidence = np.asarray(confidence, dtype=float)
    pred = np.asarray(pred, dtype=object)
    if confidence.ndim == 1:
        confidence, pred = confidence[:, None], pred[:, None]
    if confidence.shape[1] != thresholds.size or pred.shape != confidence.shape:
        raise ValueError(f"confidence {confidence.shape} and pred {pred.shape} must both be "
                         f"(n_items, {thresholds.size}) for a {thresholds.size}-stage certificate")
    has_verdict = np.isin(pred, ["a", "b"])
    # NaN >= λ is False, and λ = inf accepts nothing (the certificate abstained at that stage)
    passes = (np.nan_to_num(confidence, nan=-np.inf) >= thresholds[None, :]) & has_verdict
    stage = np.where(passes.any(axis=1), passes.argmax(axis=1), -1)
    verdict = np.full(len(stage), ESCALATE, dtype=object)
    decided = stage >= 0
    verdict[decided] = pred[np.flatnonzero(decided), stage[decided]]
    return Routing(stage=stage, verdict=verdict)


def stage_columns(certificate: Certificate, table: pa.Table, source: str = "<data>"
                  ) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Line up a table's rows into the (n_items, n_stages) arrays :func:`route` takes.

    Returns
    -------
    ids : list of str, length n
    confidence : ndarray of shape (n, n_stages)
    pred : ndarray of object, shape (n, n_stages)
    extra : dict of column name → ndarray of shape (n,)
        ``human_label`` and ``split`` from the first stage's rows, when present.
    """
    stages = certificate.stages
    multi_judge = "judge" in table.column_names and len(set(table.column("judge").to_pylist())) > 1
    for name in ("id", "pred"):
        if name not in table.column_names:
            raise ContractError(source, "missing column", field=name,
                                hint="apply reads a scored or annotation table")
    rows_by_stage = []
    for stage in stages:
        column = stage["confidence"]
        if column not in table.column_names:
            raise ContractError(source, f"missing the confidence column of stage {stage['name']!r}",
                                field=column, hint="score the file with the certificate's model "
                                "first (marc-ray score) or pass the pipeline's scores file")
        part = table
        if multi_judge:
            judge = stage.get("judge", stage["name"])
            mask = np.array([j == judge for j in table.column("judge").to_pylist()])
            if not mask.any():
                raise ContractError(source, f"no rows for judge {judge!r} of the certificate",
                                    field="judge")
            part = table.filter(pa.array(mask))
        rows_by_stage.append(part)
    ids = list(dict.fromkeys(rows_by_stage[0].column("id").to_pylist()))
    for part in rows_by_stage[1:]:
        for value in part.column("id").to_pylist():
            if value not in set(ids):
                ids.append(value)
    position = {value: index for index, value in enumerate(ids)}
    n, n_stages = len(ids), len(stages)
    confidence = np.full((n, n_stages), np.nan)
    pred = np.full((n, n_stages), None, dtype=object)
    for l, (stage, part) in enumerate(zip(stages, rows_by_stage)):
        index = np.array([position[v] for v in part.column("id").to_pylist()], dtype=int)
        values = part.column(stage["confidence"]).to_numpy(zero_copy_only=False).astype(float)
        confidence[index, l] = values
        pred[index, l] = np.array(part.column("pred").to_pylist(), dtype=object)
    extra = {}
    for name in ("human_label", "split"):
        if name in rows_by_stage[0].column_names:
            values = np.full(n, None, dtype=object)
            index = np.array([position[v] for v in rows_by_stage[0].column("id").to_pylist()], dtype=int)
            values[index] = np.array(rows_by_stage[0].column(name).to_pylist(), dtype=object)
            extra[name] = values
    return ids, confidence, pred, extra


def apply_certificate(certificate: Certificate, table: pa.Table, source: str = "<data>"
                      ) -> tuple[pa.Table, dict]:
    """Verdict or escalation per item, and the drift diagnostic per stage.

    Parameters
    ----------
    certificate : Certificate
    table : pyarrow.Table
        Scored rows (see the module docstring).
    source : str
        For error messages.

    Returns
    -------
    decisions : pyarrow.Table
        ``id``, ``verdict`` ("a", "b" or "escalate"), ``decided_by`` (the deciding judge, null
        when escalated), ``stage`` (its index, -1), ``confidence`` (the first stage's).
    summary : dict
        ``n``, ``coverage``, ``escalated``, ``by_stage`` counts, and ``drift`` per stage
        (``report.diagnostics.drift`` against the calibration confidences stored in the
        certificate; absent when the certificate stores none).
    """
    from .report.diagnostics import drift

    ids, confidence, pred, _ = stage_columns(certificate, table, source)
    routing = route(certificate, confidence, pred)
    names = [stage["name"] for stage in certificate.stages]
    decided_by = [names[s] if s >= 0 else None for s in routing.stage]
    decisions = pa.table({
        "id": pa.array(ids, pa.string()),
        "verdict": pa.array(routing.verdict.tolist(), pa.string()),
        "decided_by": pa.array(decided_by, pa.string()),
        "stage": pa.array(routing.stage.astype(np.int32)),
        "confidence": pa.array(confidence[:, 0]),
    })
    n = len(ids)
    summary = {"n": n, "coverage": float(routing.accepted.mean()) if n else 0.0,
               "escalated": int((~routing.accepted).sum()),
               "by_stage": {name: int((routing.stage == l).sum()) for l, name in enumerate(names)},
               "drift": {}}
    stored = (certificate.extra or {}).get("calibration_confidence", {})
    thresholds = stage_thresholds(certificate)
    for l, name in enumerate(names):
        reference = stored.get(name)
        values = confidence[:, l]
        if reference and np.isfinite(values).any():
            threshold = thresholds[l] if math.isfinite(thresholds[l]) else None
            summary["drift"][name] = drift(np.asarray(reference, dtype=float), values, threshold)
    return decisions, summary


def apply_file(certificate_path: str | os.PathLike, data_path: str | os.PathLike,
               out_dir: str | os.PathLike) -> dict:
    """:func:`apply_certificate` on files: writes ``decisions.parquet`` and ``apply_summary.json``."""
    certificate = Certificate.read(certificate_path)
    table = read_table(data_path)
    decisions, summary = apply_certificate(certificate, table, os.fspath(data_path))
    write_table_atomic(decisions, os.path.join(out_dir, "decisions.parquet"))
    summary["certificate"] = os.path.abspath(os.fspath(certificate_path))
    summary["data"] = os.path.abspath(os.fspath(data_path))
    write_json_atomic(summary, os.path.join(out_dir, "apply_summary.json"))
    return summary
