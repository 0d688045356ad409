"""``marc-ray audit CERTIFICATE AUDITED``: test a certificate on labels gathered after deployment.

The audit tests the certificate's promise on the items **the certificate decides**, and it finds
them itself: it applies the certificate (its thresholds, its per-group thresholds, its cascade
routing: ``groups.route_by_group``, the one routing rule) to the confidences it is given. A
judge's ``pred`` is only the verdict a decided item gets, never a decision.

AUDITED (JSONL, JSON or Parquet) has one row per item the certified judge handled (for a cascade,
one row per item and judge, with a ``judge`` column, as ``apply`` reads scored files):

* ``id``;
* each stage's confidence: the column the certificate names (``conf_marc``, ...), or
  ``confidence`` for a one-judge certificate (as ``apply``'s ``decisions.parquet`` has it);
* ``pred``: the judge's verdict "a" / "b" (null: none). Without ``pred``, a one-judge audit takes
  a decided item's verdict from ``verdict``;
* ``human_label`` ("a", "b", "tie"; null where the item was not sampled for labelling) or
  ``human_votes`` (a list of {annotator, label}; the majority is the label);
* optional ``verdict`` ("a" / "b" / "escalate", e.g. from ``apply``): checked against what the
  certificate decides on every row; a row where they differ is refused (exit 2), since the audit
  would otherwise test decisions the certificate did not make;
* for a per-group certificate, its group column (``certificate.groups["column"]``): items are
  routed by their group's thresholds and each group is tested at ``level / G``;
* optional batch column (``--batch-column``, default ``batch``) for ``--sequential``.

Exit status (``audit.EXIT_CODES``): 0 keep, 3 recalibrate, 4 drift, 6 cannot test (no decided
item carries a label), 2 bad input.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..contracts import (Certificate, ContractError, agreement, align_items, majority_label,
                         read_table, write_json_atomic)
from ..contracts.options import add_flags, check_by_building, settings_from_args
from ..contracts.schemas import PREDICTIONS
from .audit import AuditOptions

EPILOG = """\
example:
  marc-ray audit runs/demo/calibrate/certificate.json audited.parquet --level 0.05 --out runs/audit
  marc-ray audit certificate.json weekly_audits.jsonl --sequential --batch-column week

which items are decided is computed here, by applying the certificate (its thresholds, groups and
cascade routing) to each row's confidences; a verdict column, if given, must match it.
the exact test is valid for one look; with --sequential the anytime-valid betting test is
used, so the file may be re-audited after every new batch without inflating false alarms.
exit status: 0 keep the certificate; 3 the guarantee is rejected: recalibrate with fresh
labels; 4 not rejected but the confidences drifted: recalibration advised; 6 cannot test: no
item the certificate decides carries a human label; 2 bad input.
"""

VERDICTS = ("a", "b", "escalate")
_ROW = "__audit_row__"  # the user's row number, carried through a cascade's alignment


def register(subparsers) -> None:
    """Add the ``audit`` subcommand."""
    parser = subparsers.add_parser(
        "audit", help="test a certificate on human labels gathered after deployment",
        description="Is the judge still agreeing with humans on >= 1 - alpha of the items its "
                    "certificate decides?",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("certificate", metavar="CERTIFICATE", help="certificate.json")
    parser.add_argument("audited", metavar="AUDITED", help="audited items (.jsonl, .json, .parquet)")
    add_flags(parser, AuditOptions, check=check_by_building(AuditOptions))
    parser.add_argument("--out", default=None, metavar="DIR", help="write audit.json there")
    parser.set_defaults(handler=run_audit)


@dataclass
class StageInputs:
    """AUDITED as items × stages.

    Attributes
    ----------
    rows : ndarray of object, shape (n,)
        The user's row of each item (for a cascade: its first judge's row; None if absent).
    confidence : ndarray of float, shape (n, n_stages)
    pred : ndarray of object, shape (n, n_stages)
        Each stage's verdict, "a" / "b" / None.
    columns : dict of name -> ndarray of object, shape (n,)
        The other columns the audit reads, when present (labels, verdict, group, batch).
    """

    rows: np.ndarray
    confidence: np.ndarray
    pred: np.ndarray
    columns: dict


def _column(table, name):
    return np.asarray(table.column(name).to_pylist(), dtype=object)


def stage_inputs(certificate: Certificate, table: pa.Table, source: str, carry: list[str]
                 ) -> StageInputs:
    """Each item's confidence and verdict at every stage of ``certificate``."""
    stages, names = certificate.stages, table.column_names
    table = table.append_column(_ROW, pa.array(np.arange(table.num_rows)))
    if len(stages) == 1:
        parts = [table]
        column = stages[0]["confidence"] if stages[0]["confidence"] in names else "confidence"
        columns = [column]
    else:
        judges = [stage.get("judge", stage["name"]) for stage in stages]
        if "judge" not in names:
            raise ContractError(source, f"a cascade certificate ({len(stages)} judges) needs every "
                                "judge's row of each item", field="judge",
                                hint=f"one row per item and judge {judges}, each with its confidence "
                                "and pred (as the run's score/ files)")
        parts = [table.filter(pc.equal(table.column("judge"), j)) for j in judges]
        columns = [stage["confidence"] for stage in stages]
        for judge, part in zip(judges, parts):
            if part.num_rows == 0:
                raise ContractError(source, f"no rows for judge {judge!r} of the certificate",
                                    field="judge")
    for column, stage in zip(columns, stages):
        if column not in names:
            raise ContractError(source, "missing column", field=stage["confidence"],
                                hint="the confidence the certificate thresholds (stage "
                                f"{stage['name']!r}; for one judge also 'confidence'): the audit "
                                "applies the certificate to it to find the decided items")
    for column, part in zip(columns, parts):
        _check_unique_ids(part, source)
        _check_confidence(part, column, source)
    if "pred" not in names:
        if "verdict" not in names or len(stages) > 1:
            raise ContractError(source, "missing column", field="pred",
                                hint="each judge's verdict 'a' / 'b' per item (a one-judge audit "
                                "may give the verdict column instead)")
        # one judge, decisions only: a decided item's verdict is the judge's; an escalated row
        # with a confidence had a verdict too (the scores contract: NaN where none), so a
        # placeholder lets the check below refuse a row the certificate would have decided
        verdict = _column(table, "verdict")
        pred = np.where(np.isin(verdict, PREDICTIONS), verdict, "a").astype(object)
        parts = [table.append_column("pred", pa.array(pred.tolist(), pa.string()))]
    else:
        for part in parts:
            _check_values(part, "pred", source, PREDICTIONS + (None,), "use 'a', 'b' or null")
    aligned = align_items(parts, columns, carry=[_ROW])
    rows = aligned.extra[_ROW]
    present = np.flatnonzero(~np.equal(rows, None))
    values = {}
    for name in (c for c in carry if c in names):  # read as Python values: a null stays None
        values[name] = np.full(rows.size, None, dtype=object)
        values[name][present] = _column(table, name)[rows[present].astype(np.int64)]
    return StageInputs(rows=rows, confidence=aligned.confidence, pred=aligned.pred, columns=values)


def _check_confidence(part: pa.Table, column: str, source: str) -> None:
    values = part.column(column)
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)
            or pa.types.is_null(values.type)):
        raise ContractError(source, f"confidences must be numbers, got {values.type}", field=column)
    confidence = values.to_numpy(zero_copy_only=False).astype(float)
    bad = np.flatnonzero((confidence < 0) | (confidence > 1))
    if bad.size:
        raise ContractError(source, f"confidence {confidence[bad[0]]!r} is outside [0, 1]",
                            row=int(part.column(_ROW)[int(bad[0])].as_py()), field=column)


def _check_values(part: pa.Table, column: str, source: str, allowed: tuple, hint: str) -> None:
    values = _column(part, column)
    ok = np.isin(values, [v for v in allowed if v is not None])
    if None in allowed:
        ok |= np.equal(values, None)
    bad = np.flatnonzero(~ok)
    if bad.size:
        raise ContractError(source, f"unknown {column} {values[bad[0]]!r}",
                            row=int(part.column(_ROW)[int(bad[0])].as_py()), field=column, hint=hint)


def _check_unique_ids(part: pa.Table, source: str) -> None:
    ids = part.column("id").cast(pa.string())
    counts = pc.value_counts(ids)
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    if len(repeated):
        rows = np.flatnonzero(pc.equal(ids, repeated[0]).to_numpy(zero_copy_only=False))
        raise ContractError(source, f"id {repeated[0].as_py()!r} appears twice (one row per item"
                            + (" and judge)" if "judge" in part.column_names else ")"),
                            row=int(part.column(_ROW)[int(rows[1])].as_py()), field="id")


def human_labels(columns: dict, rows: np.ndarray, source: str) -> np.ndarray:
    """Each item's human label ("a", "b", "tie" or None: not labelled), shape (n,)."""
    if "human_label" in columns:
        label_name, labels = "human_label", columns["human_label"]
    elif "human_votes" in columns:
        label_name = "human_votes"
        labels = np.array([None if not votes else majority_label([v["label"] for v in votes])
                           for votes in columns["human_votes"]], dtype=object)
    else:
        raise ContractError(source, "missing column", field="human_label",
                            hint="the human labels of the audited sample (human_label or human_votes)")
    bad = np.flatnonzero(~np.isin(labels, ("a", "b", "tie")) & ~np.equal(labels, None))
    if bad.size:
        raise ContractError(source, f"unknown label {labels[bad[0]]!r}", row=rows[bad[0]],
                            field=label_name, hint="use 'a', 'b', 'tie' or null (not labelled)")
    return labels


def decided_by_certificate(certificate: Certificate, inputs: StageInputs, source: str):
    """Route every item with the certificate; check a given verdict column against it.

    Returns
    -------
    routing : routing.Routing
    groups : ndarray of object, shape (n,), or None (a certificate without groups)
    """
    from .decide import thresholds_by_group
    from .groups import route_by_group

    n = inputs.confidence.shape[0]
    groups = None
    if certificate.groups:
        column = certificate.groups["column"]
        if column not in inputs.columns:
            raise ContractError(source, f"the certificate has a threshold per {column!r} but the "
                                "audited items have no such column", field=column,
                                hint="give each item's group: the certificate decides by it")
        groups = inputs.columns[column]
    routing = route_by_group(thresholds_by_group(certificate),
                             groups if groups is not None else np.full(n, "__all__", dtype=object),
                             inputs.confidence, inputs.pred)
    if "verdict" in inputs.columns:
        given = inputs.columns["verdict"]
        given = np.where(np.equal(given, None), "escalate", given)
        bad = np.flatnonzero(~np.isin(given, VERDICTS))
        if bad.size:
            raise ContractError(source, f"unknown verdict {given[bad[0]]!r}", row=inputs.rows[bad[0]],
                                field="verdict", hint="use 'a', 'b' or 'escalate'")
        differ = np.flatnonzero(given != routing.verdict)
        if differ.size:
            i = int(differ[0])
            made = ("escalates this item" if routing.verdict[i] == "escalate"
                    else f"decides {routing.verdict[i]!r}")
            raise ContractError(source, f"the verdict column says {given[i]!r} but the certificate "
                                f"{made} (its thresholds applied to the item's confidences); "
                                f"{differ.size} of {n} rows differ", row=inputs.rows[i],
                                field="verdict", hint="audit the decisions this certificate makes: "
                                "drop the verdict column, or apply this certificate and audit its "
                                "decisions.parquet")
    return routing, groups


def audited_items(certificate: Certificate, table, source: str, batch_column: str | None):
    """Parse AUDITED: the agreement of each labelled item the certificate decides, and counts.

    Returns
    -------
    agree : ndarray of bool, (n_audited,)
    batch : ndarray or None, (n_audited,)
    groups : ndarray of object or None, (n_audited,)  (a per-group certificate)
    confidence : ndarray of float, (n_items,)  every item's first-stage confidence (drift)
    counts : dict
    """
    if "id" not in table.column_names:
        raise ContractError(source, "missing column", field="id")
    carry = ["human_label", "human_votes", "verdict"]
    if certificate.groups:
        carry.append(certificate.groups["column"])
    if batch_column is not None:
        if batch_column not in table.column_names:
            raise ContractError(source, "missing column", field=batch_column,
                                hint="name the batch / time column with --batch-column")
        carry.append(batch_column)
    inputs = stage_inputs(certificate, table, source, carry)
    labels = human_labels(inputs.columns, inputs.rows, source)
    routing, groups = decided_by_certificate(certificate, inputs, source)
    decided = routing.accepted
    labelled = ~np.equal(labels, None)
    audited = decided & labelled
    agree, kept = agreement(routing.verdict[audited], labels[audited], certificate.tie_policy)
    batch = None
    if batch_column is not None:
        values = inputs.columns[batch_column][audited][kept]
        missing = np.flatnonzero(np.equal(values, None))
        if missing.size:
            row = inputs.rows[np.flatnonzero(audited)[np.flatnonzero(kept)[missing[0]]]]
            raise ContractError(source, "missing batch", row=row, field=batch_column)
        batch = values
    counts = {"rows": int(table.num_rows), "items": int(decided.size),
              "decided": int(decided.sum()), "escalated": int((~decided).sum()),
              "decided_unlabelled": int((decided & ~labelled).sum()),
              "escalated_labelled": int((~decided & labelled).sum()),
              "ties_dropped": int((~kept).sum()), "audited": int(agree.size),
              "tie_policy": certificate.tie_policy,
              "decided_by": "the certificate applied to the items' confidences"
                            + ("; the verdict column matches it" if "verdict" in inputs.columns else "")}
    return (agree, batch, None if groups is None else groups[audited][kept],
            inputs.confidence[:, 0], counts)


def _drift(certificate: Certificate, confidence):
    """The apply stage's drift check on the first stage, when both samples exist."""
    stored = (certificate.extra or {}).get("calibration_confidence", {})
    name = certificate.stages[0]["name"]
    if confidence is None or not stored.get(name) or not np.isfinite(confidence).any():
        return None
    from .diagnostics import drift

    threshold = float(certificate.stages[0]["threshold"])
    return drift(np.asarray(stored[name], dtype=float), confidence,
                 threshold if np.isfinite(threshold) else None)


def run_audit(args) -> int:
    from .audit import audit, audit_by_group

    settings_from_args(args, AuditOptions).validate()
    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ContractError(args.out, "--out must be a folder, but a file of that name exists")
    certificate = Certificate.read(args.certificate)
    source = os.fspath(args.audited)
    table = read_table(source)
    agree, batch, groups, confidence, counts = audited_items(
        certificate, table, source, args.batch_column if args.sequential else None)
    drift = _drift(certificate, confidence)
    if groups is not None:  # a per-group certificate: each group tested at level / G
        deciding = [g for g, record in certificate.groups["values"].items()
                    if not record.get("abstains")]  # an abstaining group decides nothing to test
        result = audit_by_group(agree, groups, certificate.alpha, args.level, batch=batch,
                                drift=drift, counts=counts, group_names=deciding)
    else:
        result = audit(agree, certificate.alpha, args.level, batch=batch, drift=drift, counts=counts)
    report = result.to_dict()
    report.update(certificate=os.fspath(args.certificate), audited=source,
                  certificate_data_hash=certificate.data_hash)
    if args.out:
        write_json_atomic(report, os.path.join(args.out, "audit.json"))
    print(result.sentence())
    if result.drift:
        print(result.drift["message"])
    print("Advice: " + result.advice())
    print(f"(items {counts['items']}, decided by the certificate {counts['decided']}, "
          f"n audited {result.n}, agreements {result.agreements}, observed agreement "
          f"{result.observed_agreement:.3f}, upper bound on disagreement {result.upper_bound:.3f}, "
          f"p = {result.p_value:.3g}" + (f", e-value {result.e_value:.3g}" if result.e_value else "")
          + f"; exit {result.exit_code}: {result.exit_meaning})")
    return result.exit_code
