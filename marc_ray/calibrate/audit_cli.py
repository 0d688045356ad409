"""``marc-ray audit CERTIFICATE AUDITED``: test a certificate on labels gathered after deployment.

AUDITED (JSONL, JSON or Parquet) has one row per item the certified judge handled:

* ``id``;
* ``verdict`` (or ``pred``): "a" / "b" for a decided item; "escalate" or null for an escalated
  one (counted, not tested: the certificate promises nothing about them);
* ``human_label`` ("a", "b", "tie"; null where the item was not sampled for labelling) or
  ``human_votes`` (a list of {annotator, label}; the majority is the label);
* optional ``confidence`` (the first stage's, for the drift check) and a batch column
  (``--batch-column``, default ``batch``: a week number or a date) for ``--sequential``;
* for a per-group certificate, its group column (``certificate.groups["column"]``): each group
  is then tested on its own at ``level / G`` (``audit.audit_by_group``).

Exit status: see ``audit.EXIT_CODES`` (0 keep, 3 recalibrate, 4 drift, 2 bad input).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from ..contracts import Certificate, ContractError, agreement, majority_label, read_table, write_json_atomic

EPILOG = """\
example:
  marc-ray audit runs/demo/certificate.json audited.parquet --level 0.05 --out runs/audit
  marc-ray audit certificate.json weekly_audits.jsonl --sequential --batch-column week

the exact test is valid for one look; with --sequential the anytime-valid betting test is
used, so the file may be re-audited after every new batch without inflating false alarms.
exit status: 0 keep the certificate; 3 the guarantee is rejected: recalibrate with fresh
labels; 4 not rejected but the confidences drifted: recalibration advised; 2 bad input.
"""

VERDICTS = ("a", "b", "escalate")


def register(subparsers) -> None:
    """Add the ``audit`` subcommand."""
    parser = subparsers.add_parser(
        "audit", help="test a certificate on human labels gathered after deployment",
        description="Is the judge still agreeing with humans on >= 1 - alpha of the items it decides?",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("certificate", metavar="CERTIFICATE", help="certificate.json")
    parser.add_argument("audited", metavar="AUDITED", help="audited items (.jsonl, .json, .parquet)")
    parser.add_argument("--level", type=float, default=0.05,
                        help="false-alarm rate of the test (default 0.05)")
    parser.add_argument("--sequential", action="store_true",
                        help="anytime-valid test over the batches of --batch-column")
    parser.add_argument("--batch-column", default="batch", metavar="NAME",
                        help="column giving each item's batch / time (default: batch)")
    parser.add_argument("--out", default=None, metavar="DIR", help="write audit.json there")
    parser.set_defaults(handler=run_audit)


def _column(table, name):
    return np.asarray(table.column(name).to_pylist(), dtype=object)


def audited_items(table, source: str, tie_policy: str, batch_column: str | None):
    """Parse AUDITED: the agreement of each labelled decided item, its batch, and counts.

    Returns
    -------
    agree : ndarray of bool, (n_audited,)
    batch : ndarray or None, (n_audited,)
    confidence : ndarray of float or None, (n_rows,)  every row's (for the drift check)
    counts : dict
    """
    names = table.column_names
    if "id" not in names:
        raise ContractError(source, "missing column", field="id")
    verdict_name = "verdict" if "verdict" in names else "pred" if "pred" in names else None
    if verdict_name is None:
        raise ContractError(source, "missing column", field="verdict",
                            hint="the judge's decision per item: 'a', 'b' or 'escalate' (or a pred column)")
    verdict = _column(table, verdict_name)
    verdict = np.where(np.equal(verdict, None), "escalate", verdict)
    bad = np.flatnonzero(~np.isin(verdict, VERDICTS))
    if bad.size:
        raise ContractError(source, f"unknown verdict {verdict[bad[0]]!r}", row=int(bad[0]),
                            field=verdict_name, hint="use 'a', 'b' or 'escalate'")
    if "human_label" in names:
        label_name, labels = "human_label", _column(table, "human_label")
    elif "human_votes" in names:
        label_name = "human_votes"
        labels = np.array([None if not votes else majority_label([v["label"] for v in votes])
                           for votes in table.column("human_votes").to_pylist()], dtype=object)
    else:
        raise ContractError(source, "missing column", field="human_label",
                            hint="the human labels of the audited sample (human_label or human_votes)")
    bad = np.flatnonzero(~np.isin(labels, ("a", "b", "tie")) & ~np.equal(labels, None))
    if bad.size:
        raise ContractError(source, f"unknown label {labels[bad[0]]!r}", row=int(bad[0]),
                            field=label_name, hint="use 'a', 'b', 'tie' or null (not labelled)")
    decided = verdict != "escalate"
    labelled = ~np.equal(labels, None)
    audited = decided & labelled
    agree, kept = agreement(verdict[audited], labels[audited], tie_policy)
    batch = None
    if batch_column is not None:
        if batch_column not in names:
            raise ContractError(source, "missing column", field=batch_column,
                                hint="name the batch / time column with --batch-column")
        column = table.column(batch_column)
        null = column.is_null().to_numpy(zero_copy_only=False)[audited][kept]
        values = np.asarray(column.to_pylist(), dtype=object)[audited][kept]
        missing = np.flatnonzero(null)
        if missing.size:
            row = int(np.flatnonzero(audited)[np.flatnonzero(kept)[missing[0]]])
            raise ContractError(source, "missing batch", row=row, field=batch_column)
        batch = values
    confidence = None
    if "confidence" in names:
        confidence = np.asarray(table.column("confidence").to_pylist(), dtype=float)
    counts = {"rows": int(table.num_rows), "escalated": int((~decided).sum()),
              "decided_unlabelled": int((decided & ~labelled).sum()),
              "ties_dropped": int((~kept).sum()), "audited": int(agree.size),
              "tie_policy": tie_policy}
    return agree, batch, confidence, counts


def audited_groups(table, source: str, column: str, tie_policy: str) -> np.ndarray:
    """The group of each audited item, in the order :func:`audited_items` returns them."""
    verdict_name = "verdict" if "verdict" in table.column_names else "pred"
    verdict = _column(table, verdict_name)
    decided = np.isin(verdict, ("a", "b"))
    if "human_label" in table.column_names:
        labels = _column(table, "human_label")
    else:
        labels = np.array([None if not votes else majority_label([v["label"] for v in votes])
                           for votes in table.column("human_votes").to_pylist()], dtype=object)
    audited = decided & ~np.equal(labels, None)
    _, kept = agreement(verdict[audited], labels[audited], tie_policy)
    groups = _column(table, column)[audited][kept]
    missing = np.flatnonzero(np.equal(groups, None))
    if missing.size:
        row = int(np.flatnonzero(audited)[np.flatnonzero(kept)[missing[0]]])
        raise ContractError(source, "missing group", row=row, field=column)
    return groups


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

    if not 0 < args.level < 1:
        raise ValueError(f"--level must be in (0, 1), got {args.level}")
    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ContractError(args.out, "--out must be a folder, but a file of that name exists")
    certificate = Certificate.read(args.certificate)
    source = os.fspath(args.audited)
    table = read_table(source)
    agree, batch, confidence, counts = audited_items(
        table, source, certificate.tie_policy, args.batch_column if args.sequential else None)
    drift = _drift(certificate, confidence)
    column = (certificate.groups or {}).get("column")
    if column is not None and column in table.column_names:  # a per-group certificate
        groups = audited_groups(table, source, column, certificate.tie_policy)
        result = audit_by_group(agree, groups, certificate.alpha, args.level, batch=batch,
                                drift=drift, counts=counts)
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
    print(f"(n audited {result.n}, agreements {result.agreements}, observed agreement "
          f"{result.observed_agreement:.3f}, upper bound on disagreement {result.upper_bound:.3f}, "
          f"p = {result.p_value:.3g}" + (f", e-value {result.e_value:.3g}" if result.e_value else "")
          + f"; exit {result.exit_code})")
    return result.exit_code
