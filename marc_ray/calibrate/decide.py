"""Decide items with a certificate, single-threshold or per-group, each with its reason.

:func:`decide` is the one pure function ``apply`` needs: it reads the thresholds from a
:class:`~marc_ray.contracts.Certificate` (its stages, or its ``groups`` field), routes every
item (:func:`~marc_ray.calibrate.groups.route_by_group`), and explains every outcome
(:func:`~marc_ray.calibrate.reasons.explain`). A single-threshold certificate is the special
case of one group holding every item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..contracts import Certificate
from .groups import route_by_group, thresholds_from_record, thresholds_per_item
from .reasons import explain
from .routing import Routing

__all__ = ["DECISION_COLUMNS", "DECIDE_ROWS", "Decisions", "decide", "decide_in_slices",
           "thresholds_by_group"]

# the columns of decisions.parquet (``apply``); a per-group certificate adds its group column,
# which therefore may not take one of these names
DECISION_COLUMNS = ("id", "verdict", "decided_by", "stage", "confidence", "reason_kind", "reason")

_ALL = "__all__"  # the single group of a certificate without groups


@dataclass
class Decisions(Routing):
    """A :class:`~marc_ray.calibrate.routing.Routing` (stage, verdict, unseen) with, per
    item, the reason's kind and the reason in plain words (both shape (n,))."""

    kind: np.ndarray
    reason: np.ndarray


def thresholds_by_group(certificate: Certificate) -> dict[str, np.ndarray]:
    """{group: stage thresholds (n_stages,)}; one pseudo-group for a certificate without groups."""
    if certificate.groups:
        return thresholds_from_record(certificate.groups)
    return {_ALL: np.array([float(s["threshold"]) for s in certificate.stages], dtype=float)}


def decide(certificate: Certificate, confidence, pred, groups=None, runs_unreadable=None,
           runs_total=None) -> Decisions:
    """Route and explain items with ``certificate``.

    Parameters
    ----------
    certificate : Certificate
    confidence : ndarray of float, shape (n,) or (n, n_stages)
    pred : ndarray of object, shape (n,) or (n, n_stages)
    groups : array-like of str, shape (n,)
        Required for a per-group certificate (the values of ``certificate.groups["column"]``);
        ignored otherwise.
    runs_unreadable, runs_total : ndarray of int, shape (n,) or (n, n_stages), optional
        For the no-verdict reason (``reasons.count_unreadable``).

    Returns
    -------
    Decisions
    """
    thresholds = thresholds_by_group(certificate)
    confidence = np.asarray(confidence, dtype=float)
    n = confidence.shape[0]
    names = [s["name"] for s in certificate.stages]
    grouped = bool(certificate.groups)
    if grouped and groups is None:
        raise ValueError(f"this certificate has a threshold per {certificate.groups['column']!r}; "
                         "give every item's group")
    item_groups = np.asarray(groups, dtype=object) if grouped else np.full(n, _ALL, dtype=object)
    routing = route_by_group(thresholds, item_groups, confidence, pred)
    item_thresholds, unseen = thresholds_per_item(thresholds, item_groups, len(names))
    kind, reason = explain(routing.stage, confidence, pred, item_thresholds, names,
                           groups=item_groups if grouped else None, unseen=unseen,
                           runs_unreadable=runs_unreadable, runs_total=runs_total)
    return Decisions(stage=routing.stage, verdict=routing.verdict, unseen=unseen, kind=kind,
                     reason=reason)


DECIDE_ROWS = 1 << 16  # items decided at once: their reasons are Python strings (~100 bytes each)


def decide_in_slices(certificate: Certificate, confidence, pred, groups=None, runs_unreadable=None,
                     runs_total=None, rows: int | None = None):
    """:func:`decide` on consecutive slices of at most ``rows`` items (default
    :data:`DECIDE_ROWS`): yields ``(start,
    Decisions)`` per slice, in item order. Each item's decision and reason depend on that item
    alone, so the slices together equal one call on every item; memory holds one slice's reason
    strings instead of a million of them (issue 22)."""
    rows = rows or DECIDE_ROWS
    confidence = np.asarray(confidence, dtype=float)
    n = confidence.shape[0]

    def part(values, lo, dtype=None):
        return None if values is None else np.asarray(values, dtype=dtype)[lo:lo + rows]

    for lo in range(0, max(n, 1), rows):
        yield lo, decide(certificate, confidence[lo:lo + rows], part(pred, lo, object),
                         groups=part(groups, lo, object),
                         runs_unreadable=part(runs_unreadable, lo), runs_total=part(runs_total, lo))
