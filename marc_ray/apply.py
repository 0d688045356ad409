"""Apply a certificate to new items: a verdict, or "escalate", per item, and a drift check.

A certificate (``marc_ray.contracts.Certificate``) fixes, for each judge of a cascade in order
of cost, a confidence measure and a threshold λ̂ (``inf`` when nothing passed). An item is
decided by the first judge whose confidence on it reaches that judge's threshold; an item no
judge is confident enough about is escalated (to humans). The guarantee covers exactly this
rule on items drawn like the calibration set, so :func:`apply_certificate` also compares the
new items' confidences with the calibration set's (``calibrate.diagnostics.drift``).

Data in: a scored table (``marc-ray score`` output or the pipeline's ``score/<judge>.parquet``)
or an annotation table with the needed confidence column(s). One row per item, or, for a
cascade, one row per (item, judge) with a ``judge`` column naming the certificate's judges
(the pipeline's ``score/`` folder, read as one table, is that).
Or raw comparisons with a pipeline run folder (:func:`apply_run`): the run's judges annotate
them and its fitted model scores them first, so they get exactly the rule the certificate covers.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .calibrate.config import CalibrateConfig
from .calibrate.routing import ESCALATE, certificate_thresholds
from .contracts import (Certificate, ContractError, check_binding, metadata_binding, read_columns,
                        read_table,
                        validate_scores, write_json_atomic, write_table_atomic)
from .contracts.align import align_items
from .contracts.outputs import check_output_dir
from .contracts.io import absolute, is_dir, is_file, join, list_names

def stage_columns(certificate: Certificate, table: pa.Table, source: str = "<data>"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Line up a table's rows into the (n_items, n_stages) arrays :func:`route` takes.

    Returns
    -------
    ids : ndarray of object, shape (n,)
    confidence : ndarray of shape (n, n_stages)
    pred : ndarray of object, shape (n, n_stages)
    extra : dict of column name → ndarray
        ``human_label``, ``split``, ``group`` and a per-group certificate's column from the
        first stage's rows, shape (n,), when present; ``runs_unreadable`` and ``runs_total``,
        shape (n, n_stages), when every stage's rows carry the run vector ``probs``
        (``calibrate.reasons.count_unreadable``).
    """
    stages = certificate.stages
    multi_judge = "judge" in table.column_names and len(pc.unique(table.column("judge"))) > 1
    if len(stages) > 1 and not multi_judge:
        # one judge's rows cannot stand for every stage: each stage reading the same column
        # would route the items by the first judge's confidence and verdict alone
        present = (sorted(pc.unique(table.column("judge")).to_pylist()) if "judge" in table.column_names
                   else [])
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
            part = table.filter(pc.equal(table.column("judge"), judge))
            if part.num_rows == 0:
                raise ContractError(source, f"no rows for judge {judge!r} of the certificate",
                                    field="judge")
        rows_by_stage.append(part)
    carry = ("human_label", "split", "group")
    if certificate.groups and certificate.groups["column"] not in carry:
        carry += (certificate.groups["column"],)  # the column each item is routed by
    aligned = align_items(rows_by_stage, [stage["confidence"] for stage in stages], carry=carry)
    if all(_has_run_counts(part) for part in rows_by_stage):
        aligned.extra.update(_run_counts(rows_by_stage, aligned.ids))
    return aligned.ids, aligned.confidence, aligned.pred, aligned.extra


def _has_run_counts(part: pa.Table) -> bool:
    """The rows carry their run vectors, or the counts streamed from them (``read_for_apply``)."""
    from .calibrate.run_counts import COUNT_COLUMNS

    return "probs" in part.column_names or all(c in part.column_names for c in COUNT_COLUMNS)


def _run_counts(parts: list[pa.Table], ids: np.ndarray) -> dict[str, np.ndarray]:
    """Unreadable and total runs per (item, stage), from each stage's ``probs`` run vectors or
    the counts ``read_for_apply`` streamed from them."""
    from .calibrate.reasons import count_unreadable
    from .calibrate.run_counts import COUNT_COLUMNS

    unreadable = np.zeros((len(ids), len(parts)), dtype=np.int64)
    total = np.zeros((len(ids), len(parts)), dtype=np.int64)
    value_set = pa.array(ids, pa.string())
    for l, part in enumerate(parts):
        rows = pc.index_in(part.column("id").cast(pa.string()), value_set=value_set).to_numpy()
        if "probs" in part.column_names:
            status = part.column("status") if "status" in part.column_names else None  # "not run"
            unreadable[rows, l], total[rows, l] = count_unreadable(part.column("probs"), status)
        else:
            unreadable[rows, l], total[rows, l] = (
                part.column(c).to_numpy(zero_copy_only=False) for c in COUNT_COLUMNS)
    return {"runs_unreadable": unreadable, "runs_total": total}


BINDINGS_METADATA_KEY = b"marc_ray.apply_bindings"  # per judge: the metadata of its own file


def check_inputs(certificate: Certificate, table: pa.Table, source: str = "<data>") -> None:
    """Refuse data the certificate does not cover, before anything is decided.

    Per stage, on that judge's rows: ``contracts.validate_scores`` (unique non-empty string ids,
    verdicts in {a, b} or null, confidences numbers in [0, 1] — a boolean is not a number — and
    NaN only where ``pred`` is null: such an item has no verdict and is escalated), then
    ``contracts.check_binding`` (the judge, its model, the confidence model's hash and the run
    layout recorded in the table's metadata must be the certified ones). Row numbers are the
    rows of the user's table.

    Raises
    ------
    ContractError
        Naming the file, the row and the field, or what differs from the certificate.
    """
    if table.num_rows == 0:
        raise ContractError(source, "the table has no rows", hint="apply needs items to decide")
    metadata = table.schema.metadata or {}
    per_judge = ({k: {key.encode(): v.encode() for key, v in m.items()}
                  for k, m in json.loads(metadata[BINDINGS_METADATA_KEY]).items()}
                 if BINDINGS_METADATA_KEY in metadata else None)
    judges = table.column("judge") if "judge" in table.column_names else None  # Arrow: no
    multi_judge = judges is not None and len(pc.unique(judges)) > 1  # Python string per row
    if len(certificate.stages) > 1 and not multi_judge:
        return  # one judge's rows cannot stand for a cascade: stage_columns says so
    for index, stage in enumerate(certificate.stages):
        judge, column = stage.get("judge", stage["name"]), stage["confidence"]
        rows = (np.flatnonzero(pc.equal(judges, judge).fill_null(False).to_numpy(zero_copy_only=False))
                if multi_judge else np.arange(table.num_rows))
        if column not in table.column_names or rows.size == 0:
            continue  # stage_columns says which column or judge is missing
        part = table.take(pa.array(rows)) if multi_judge else table
        try:
            validate_scores(part, column, source, labels=False)
        except ContractError as error:  # rows of the judge's part → rows of the user's table
            row = None if error.row is None else int(rows[error.row])
            raise ContractError(error.source, error.problem, row=row, field=error.field,
                                hint=error.hint) from None
        mine = judges.take(pa.array(rows)) if multi_judge else judges
        seen = (sorted(j for j in pc.unique(mine).to_pylist() if j is not None)
                if judges is not None else [])
        own = per_judge.get(judge) if per_judge is not None else metadata
        observed = metadata_binding(own, column, judge=seen[0] if len(seen) == 1 else None)
        if judges is not None and len(seen) == 1:
            observed["judge"] = seen[0]  # the rows' judge column is what routing reads
        check_binding(certificate, index, observed, source)


def with_file_metadata(tables: list[pa.Table]) -> pa.Table:
    """Several judges' scored tables as one, each judge's file metadata kept (for check_inputs)."""
    per_judge = {}
    for part in tables:
        names = set(part.column("judge").to_pylist()) if "judge" in part.column_names else set()
        for name in names:
            per_judge[name] = {k.decode(): v.decode() for k, v in (part.schema.metadata or {}).items()
                               if k != b"pandas"}
    table = pa.concat_tables([p.replace_schema_metadata(None) for p in tables],
                             promote_options="permissive")
    return table.replace_schema_metadata({BINDINGS_METADATA_KEY: json.dumps(per_judge).encode()})


def apply_columns(certificate: Certificate) -> list[str]:
    """The columns apply reads of a scored file: ids, judges, verdicts, each stage's confidence,
    the per-group certificate's column and the human labels (``apply_run``'s observed agreement).
    Never the item texts or the run vectors, which grow with the items (issue 22)."""
    columns = ["id", "judge", "pred", *(stage["confidence"] for stage in certificate.stages),
               "human_label"]
    if certificate.groups:
        columns.append(certificate.groups["column"])
    return list(dict.fromkeys(columns))


def read_for_apply(path: str, columns: list[str] | None = None) -> pa.Table:
    """What apply reads of a scored file: ``columns`` (:func:`apply_columns`; default every
    column but the per-run lists), metadata kept, and per row the counts of unreadable runs and
    of runs (the reasons' "no usable verdict"; a run the data never had counts as neither),
    streamed from ``probs`` and ``status`` batch by batch (``calibrate.run_counts``): the run
    vectors, most of the file, are never held whole."""
    from .calibrate.run_counts import with_run_counts

    return with_run_counts(read_columns(path, columns), path)


def read_scored(path: str, columns: list[str] | None = None) -> pa.Table:
    """A scored file, or a folder of per-judge scored files (the run's ``score/``), metadata kept
    (:func:`read_for_apply`'s ``columns`` of each)."""
    if is_dir(path):
        files = [join(path, n) for n in list_names(path) if n.endswith(".parquet")]
        if len(files) > 1:
            return with_file_metadata([read_for_apply(f, columns) for f in files])
    return read_for_apply(path, columns)


def apply_certificate(certificate: Certificate, table: pa.Table, source: str = "<data>",
                      drift_significance: float = CalibrateConfig.drift_significance) -> tuple[pa.Table, dict]:
    """Verdict or escalation per item, and the drift diagnostic per stage.

    Parameters
    ----------
    certificate : Certificate
    table : pyarrow.Table
        Scored rows (see the module docstring).
    source : str
        For error messages.
    drift_significance : float, default=CalibrateConfig.drift_significance
        The drift warning fires when the KS test's p-value is below it (a run's
        ``calibrate.drift_significance``).

    Returns
    -------
    decisions : pyarrow.Table
        ``id``, ``verdict`` ("a", "b" or "escalate"), ``decided_by`` (the deciding judge, null
        when escalated), ``stage`` (its index, -1), ``confidence`` (the first stage's),
        ``reason_kind`` (one of ``calibrate.reasons.KINDS``) and ``reason`` (plain words);
        for a per-group certificate also the item's group (named as the certificate's column).
    summary : dict
        ``n``, ``coverage``, ``escalated``, ``by_stage`` counts, ``by_reason`` (count per
        reason kind), ``by_group`` (per-group certificate: per group ``n``, ``decided``,
        ``escalated``, ``unseen``), and ``drift`` per stage (``calibrate.diagnostics.drift``
        against the calibration confidences stored in the certificate; absent when the
        certificate stores none).

    Raises
    ------
    ContractError
        A per-group certificate and data without its group column.
    """
    from .calibrate.decide import DECISION_COLUMNS, decide_in_slices
    from .calibrate.diagnostics import drift
    from .calibrate.reasons import KINDS

    check_inputs(certificate, table, source)  # before deciding anything
    ids, confidence, pred, extra = stage_columns(certificate, table, source)
    groups = None
    if certificate.groups:
        column = certificate.groups["column"]
        if column in DECISION_COLUMNS:  # it would overwrite one of decisions.parquet's columns
            raise ContractError(source, f"the certificate's group column {column!r} is also a "
                                f"column of the decisions ({', '.join(DECISION_COLUMNS)})",
                                field=column, hint="rename the column and calibrate again")
        groups = extra.get(column)
        if groups is None:
            raise ContractError(source, f"the certificate has a threshold per {column!r} but the "
                                "data has no such column", field=column,
                                hint=f"annotate with carry: [{column}] (the pipeline does when "
                                f"calibrate.by is {column!r}) so the scored rows keep it")
    names = [stage["name"] for stage in certificate.stages]
    stage_names = pa.array(names + [None], pa.string())  # stage -1 (escalated): null
    group_column = certificate.groups["column"] if groups is not None else None
    n = len(ids)
    accepted = 0
    by_stage = np.zeros(len(names), dtype=np.int64)
    by_kind: dict = {}
    by_group: dict = {}
    parts = []
    # each item's decision depends on that item alone: decided a slice at a time, each slice's
    # verdicts and reasons go to Arrow at once (a million reasons as Python strings: issue 22)
    for lo, routing in decide_in_slices(certificate, confidence, pred, groups=groups,
                                        runs_unreadable=extra.get("runs_unreadable"),
                                        runs_total=extra.get("runs_total")):
        rows = slice(lo, lo + len(routing.stage))
        columns = {
            "id": pa.array(ids[rows], pa.string()),
            "verdict": pa.array(routing.verdict.tolist(), pa.string()),
            "decided_by": stage_names.take(pa.array(np.where(routing.stage < 0, len(names),
                                                             routing.stage))),
            "stage": pa.array(routing.stage.astype(np.int32)),
            "confidence": pa.array(confidence[rows, 0]),
        }
        if group_column is not None:
            columns[group_column] = pa.array(groups[rows].tolist(), pa.string())
        columns["reason_kind"] = pa.array(routing.kind.tolist(), pa.string())
        columns["reason"] = pa.array(routing.reason.tolist(), pa.string())
        parts.append(pa.table(columns))
        accepted += int(routing.accepted.sum())
        by_stage += np.bincount(routing.stage[routing.stage >= 0], minlength=len(names))
        kinds, counts = np.unique(routing.kind, return_counts=True)
        for kind, count in zip(kinds.tolist(), counts.tolist()):
            by_kind[kind] = by_kind.get(kind, 0) + count
        if group_column is not None:
            labels, member_of = np.unique(np.asarray([str(g) for g in groups[rows]], dtype=object),
                                          return_inverse=True)
            tallies = zip(labels.tolist(), np.bincount(member_of).tolist(),
                          np.bincount(member_of, weights=routing.accepted).tolist(),
                          np.bincount(member_of, weights=routing.unseen).tolist())
            for g, members, decided, unseen in tallies:
                entry = by_group.setdefault(g, {"n": 0, "decided": 0, "escalated": 0, "unseen": False})
                entry["n"] += int(members)
                entry["decided"] += int(decided)
                entry["escalated"] += int(members - decided)
                entry["unseen"] = entry["unseen"] or unseen > 0
    decisions = pa.concat_tables(parts)
    summary = {"n": n, "coverage": accepted / n if n else 0.0, "escalated": n - accepted,
               "by_stage": {name: int(by_stage[l]) for l, name in enumerate(names)},
               "by_reason": {kind: by_kind[kind] for kind in KINDS if by_kind.get(kind)},
               "drift": {},
               "certificate_provenance": provenance_line(certificate)}
    if group_column is not None:
        summary["by_group"] = {g: by_group[g] for g in sorted(by_group)}
    stored = (certificate.extra or {}).get("calibration_confidence", {})
    thresholds = certificate_thresholds(certificate)
    for l, name in enumerate(names):
        reference = stored.get(name)
        values = confidence[:, l]
        if reference and np.isfinite(values).any():
            threshold = thresholds[l] if math.isfinite(thresholds[l]) else None
            summary["drift"][name] = drift(np.asarray(reference, dtype=float), values, threshold,
                                           significance=drift_significance)
    return decisions, summary


def provenance_line(certificate: Certificate) -> str:
    """What ``apply`` shows of a certificate's provenance: its digest and the rows it covers."""
    record = certificate.provenance
    if not record:
        return "not recorded (a certificate written before provenance was recorded)"
    roles = "; ".join(f"{role}: {entry['count']} rows" for role, entry in record["roles"].items())
    excluded = (f"; {record['n_excluded']} calibration rows left out as seen"
                if record.get("n_excluded") else "")
    return (f"digest {record['digest'][:16]} (calibration rows disjoint from "
            f"{roles or 'no recorded rows: heuristic measure, fixed grid'}{excluded})")


def apply_file(certificate_path: str | os.PathLike, data_path: str | os.PathLike,
               out_dir: str | os.PathLike) -> dict:
    """:func:`apply_certificate` on files: writes ``decisions.parquet`` and ``apply_summary.json``."""
    check_output_dir(out_dir)  # before any work: a bad --out must not cost the computation
    certificate = Certificate.read(certificate_path)
    table = read_scored(os.fspath(data_path), apply_columns(certificate))
    decisions, summary = apply_certificate(certificate, table, os.fspath(data_path))
    write_table_atomic(decisions, join(out_dir, "decisions.parquet"))
    summary["certificate"], summary["data"] = absolute(certificate_path), absolute(data_path)
    write_json_atomic(summary, join(out_dir, "apply_summary.json"))
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
    from .annotate.engines import engine_spec
    from .annotate.stage import annotate_stage
    from .config import PipelineConfig, judge_name
    from .contracts import extra_carried, validate_comparisons
    from .fit.stage import score_stage
    from .run_folder import RunFolder

    run_dir, comparisons_path, out_dir = map(os.fspath, (run_dir, comparisons_path, out_dir))
    check_output_dir(out_dir)
    run, out = RunFolder(run_dir), RunFolder(out_dir)  # out_dir gets a run's annotate/ and score/
    config = PipelineConfig.from_run(run)  # read once; its judges are resolved with `run`
    certificate_path = run.certificate
    if not is_file(certificate_path):
        raise ContractError(run_dir, "the run has no certificate yet",
                            hint="finish it first: marc-ray run CONFIG --out " + run_dir)
    certificate = Certificate.read(certificate_path)
    by = (certificate.groups["column"],) if certificate.groups else ()
    # fail before any engine: malformed items, or no column to route them by
    validate_comparisons(read_table(comparisons_path), comparisons_path, carry=by)
    judges = config.judges()
    for judge in judges:  # refuse before any engine or cluster starts
        if not engine_spec(judge.engine).judges_items:
            raise ContractError(run_dir, f"judge {judge_name(judge)!r} replays recorded outputs, "
                                "so it cannot judge new items", hint="annotate and score the new "
                                "items yourself, then run: marc-ray apply CERTIFICATE SCORED_FILE")
    scored = []
    for judge in judges:  # the run's own annotate and score stages, on the new items
        name = judge_name(judge)
        judge.input = comparisons_path
        judge.output = out.annotations(name)
        judge.carry = tuple(dict.fromkeys((*judge.carry, *extra_carried(by))))  # keep the group
        annotate_stage(judge, config.ray)
        score_path = out.scores(name)
        score_stage(judge.output, run.model_folder(name) if config.fit.enabled else None, score_path)
        scored.append(read_for_apply(score_path, apply_columns(certificate)))
    table = with_file_metadata(scored)
    decisions, summary = apply_certificate(certificate, table, comparisons_path,
                                           config.calibrate.drift_significance)
    summary["agreement_on_decided"] = _observed_agreement(table, decisions, certificate)
    write_table_atomic(decisions, join(out_dir, "decisions.parquet"))
    summary["certificate"], summary["data"] = absolute(certificate_path), absolute(comparisons_path)
    write_json_atomic(summary, join(out_dir, "apply_summary.json"))
    return summary


def _observed_agreement(table: pa.Table, decisions: pa.Table, certificate: Certificate):
    """Agreement of the decided verdicts with the new items' human labels (None without labels)."""
    from .contracts import agreement

    if "human_label" not in table.column_names:
        return None
    # the first row of each decided item's id carries its label (all judges' rows carry the same)
    rows = pc.index_in(decisions.column("id"), value_set=table.column("id")).to_numpy(zero_copy_only=False)
    verdict = decisions.column("verdict").to_numpy(zero_copy_only=False)
    labels = np.full(len(verdict), None, dtype=object)
    found = ~np.isnan(rows.astype(float))
    labels[found] = table.column("human_label").to_numpy(zero_copy_only=False)[rows[found].astype(int)]
    use = (verdict != ESCALATE) & np.isin(labels, ["a", "b", "tie"])
    if not use.any():
        return None
    agree, _ = agreement(verdict[use], labels[use], certificate.tie_policy)
    return {"n": int(agree.size), "agreement": float(agree.mean()) if agree.size else None,
            "tie_policy": certificate.tie_policy}
