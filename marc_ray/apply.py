"""Apply a certificate to new items: a verdict, or "escalate", per item, and a drift check.

A certificate (``marc_ray.contracts.Certificate``) fixes, for each judge of a cascade in order
of cost, a confidence measure and a threshold λ̂ (``inf`` when nothing passed). An item is
decided by the first judge whose confidence on it reaches that judge's threshold; an item no
judge is confident enough about is escalated (to humans). The guarantee covers exactly this
rule on items drawn like the calibration set, so :func:`apply_certificate` also compares the
new items' confidences with the calibration set's (``report.diagnostics.drift``).

Data in: a scored table (``marc-ray score`` output or the pipeline's ``score/<judge>.parquet``)
or an annotation table with the needed confidence column(s). One row per item, or, for a
cascade, one row per (item, judge) with a ``judge`` column naming the certificate's judges
(the pipeline's ``score/`` folder, read as one table, is that).
Or raw comparisons with a pipeline run folder (:func:`apply_run`): the run's judges annotate
them and its fitted model scores them first, so they get exactly the rule the certificate covers.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pyarrow as pa

from .calibrate.routing import ESCALATE, certificate_thresholds, route
from .contracts import Certificate, ContractError, read_table, write_json_atomic, write_table_atomic

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
    if len(stages) > 1 and not multi_judge:
        # one judge's rows cannot stand for every stage: each stage reading the same column
        # would route the items by the first judge's confidence and verdict alone
        present = sorted(set(table.column("judge").to_pylist())) if "judge" in table.column_names else []
        raise ContractError(source, f"a {len(stages)}-judge cascade certificate needs one row per "
                            f"(item, judge) with a judge column naming "
                            f"{[s.get('judge', s['name']) for s in stages]}; the data has "
                            f"{'judges ' + str(present) if present else 'no judge column'}",
                            field="judge", hint="pass every judge's scored rows, e.g. the run's "
                            "score/ folder (marc-ray apply CERTIFICATE RUN_DIR/score --out DIR)")
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
    seen = set(ids)
    for part in rows_by_stage[1:]:
        for value in part.column("id").to_pylist():
            if value not in seen:  # a set, not set(ids) per row: that was quadratic in the items
                seen.add(value)
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
    thresholds = certificate_thresholds(certificate)
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


# ---------------------------------------------------------------------------------------------
# New raw comparisons through a pipeline run's certified judge
# ---------------------------------------------------------------------------------------------

def apply_run(run_dir: str | os.PathLike, comparisons_path: str | os.PathLike,
              out_dir: str | os.PathLike) -> dict:
    """Apply a pipeline run's certified judge to new, raw comparisons.

    The new items go through exactly what the certificate covers: each judge of the run
    annotates them with the run's simulated annotators (same pool, prompts, engine and model),
    the run's fitted confidence model scores them, and the certificate routes them
    (:func:`apply_certificate`). Everything is written under ``out_dir``: ``annotate/<judge>``
    (resumable, like the pipeline's), ``score/<judge>.parquet``, ``decisions.parquet`` and
    ``apply_summary.json``. Human labels on the new items are optional; when present, the
    summary also gives the observed agreement on the decided items.

    Raises
    ------
    ContractError
        Not a run folder, no certificate yet, malformed comparisons, new items that are in the
        few-shot pool, or a replay judge (it has no outputs for new items).
    """
    from .annotate.job import annotate
    from .config import PipelineConfig, judge_name
    from .contracts import validate_comparisons
    from .pipeline import ensure_ray, score_judge

    run_dir, comparisons_path, out_dir = map(os.fspath, (run_dir, comparisons_path, out_dir))
    config = PipelineConfig.from_run(run_dir)
    certificate_path = os.path.join(run_dir, "calibrate", "certificate.json")
    if not os.path.isfile(certificate_path):
        raise ContractError(run_dir, "the run has no certificate yet",
                            hint="finish it first: marc-ray run CONFIG --out " + run_dir)
    certificate = Certificate.read(certificate_path)
    validate_comparisons(read_table(comparisons_path), comparisons_path)  # fail before any engine
    judges = config.judges()
    for judge in judges:  # refuse before any engine or cluster starts
        if judge.engine == "replay":
            raise ContractError(run_dir, f"judge {judge_name(judge)!r} replays recorded outputs, "
                                "so it cannot judge new items", hint="annotate and score the new "
                                "items yourself, then run: marc-ray apply CERTIFICATE SCORED_FILE")
    ensure_ray(config)
    scored = []
    for judge in judges:
        name = judge_name(judge)
        judge.input = comparisons_path
        judge.output = os.path.join(out_dir, "annotate", name)
        annotate(judge)
        model_folder = os.path.join(run_dir, "fit", name) if config.fit_settings.enabled else None
        score_path = os.path.join(out_dir, "score", f"{name}.parquet")
        score_judge(config, judge, model_folder, score_path)
        scored.append(read_table(score_path).replace_schema_metadata(None))
    table = pa.concat_tables(scored, promote_options="permissive")
    decisions, summary = apply_certificate(certificate, table, comparisons_path)
    summary["agreement_on_decided"] = _observed_agreement(table, decisions, certificate)
    write_table_atomic(decisions, os.path.join(out_dir, "decisions.parquet"))
    summary["certificate"] = os.path.abspath(certificate_path)
    summary["data"] = os.path.abspath(comparisons_path)
    write_json_atomic(summary, os.path.join(out_dir, "apply_summary.json"))
    return summary


def _observed_agreement(table: pa.Table, decisions: pa.Table, certificate: Certificate):
    """Agreement of the decided verdicts with the new items' human labels (None without labels)."""
    from .contracts import agreement

    if "human_label" not in table.column_names:
        return None
    labels = dict(zip(table.column("id").to_pylist(), table.column("human_label").to_pylist()))
    pairs = [(verdict, labels.get(item)) for item, verdict in zip(decisions.column("id").to_pylist(),
                                                                 decisions.column("verdict").to_pylist())
             if verdict != ESCALATE and labels.get(item) is not None]
    if not pairs:
        return None
    agree, _ = agreement(np.array([p for p, _ in pairs], dtype=object),
                         np.array([h for _, h in pairs], dtype=object), certificate.tie_policy)
    return {"n": int(agree.size), "agreement": float(agree.mean()) if agree.size else None,
            "tie_policy": certificate.tie_policy}
