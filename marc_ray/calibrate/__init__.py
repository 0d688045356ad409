"""Certified calibration: pick the confidence threshold above which a judge agrees with humans.

The public API (importing the package loads nothing heavy; each name's module, and scipy with it,
is imported on first use, so ``marc-ray --help`` stays fast):

* bounds: :func:`clopper_pearson_upper`, :func:`clopper_pearson_interval`,
  :func:`binomial_p_value`, :func:`max_disagreements`, :func:`min_n_to_pass`;
* grids: :func:`fixed_grid`, :func:`quantile_grid`, :class:`ThresholdGrid`,
  :func:`counts_at_thresholds`;
* procedures: :func:`select_thresholds` with ``PROCEDURES`` (fixed sequence, Bonferroni, Holm);
* certifying: ``from marc_ray.calibrate.certify import certify, Stage`` (the module shares the
  function's name, so the function is imported from it), the one way every certificate is
  made: provenance, the grid check, calibration, binding and digest, once;
* estimators: :class:`SelectiveCalibrator`, :class:`CascadeCalibrator`,
  :class:`GroupedCalibrator` (a threshold per group; :func:`route_by_group`), sharing
  ``calibrate(..., ids=)``, ``route`` (a :class:`Routing`) and ``certificate`` (unbound: the
  building block :func:`certify` binds);
* metrics: :func:`auroc`, :func:`ranking_risk`, :func:`risk_coverage_curve`, :func:`aurc`,
  :func:`reliability_bins`, :func:`expected_calibration_error`, :func:`selective_agreement`;
* routing: :func:`route`, :func:`deciding_stage`, :class:`Routing`, ``ESCALATE``;
* diagnostics: :func:`drift`, :func:`monotonicity`, :func:`calibration_size`;
* the automatic choice of measure (``confidence: auto``, on training data only):
  :func:`choose_confidence`, :func:`choose_confidence_table`, :func:`validity_study_auto`;
* the validity study: :func:`validity_study` (+ :func:`validity_study_from_agreement`,
  :func:`calibrate_batch`), and per group :func:`group_validity_study`;
* reasons: :func:`explain` (a plain-words reason per routed item); :func:`decide` (route and
  explain items with any certificate, single-threshold or per-group);
* after deployment: :func:`audit` (exact and anytime-valid tests of a certificate on audited labels).

What the guarantee means, and what it does not: ``docs/guarantee.md``.
"""

from __future__ import annotations

import importlib

_LAZY = {
    **dict.fromkeys(["clopper_pearson_upper", "clopper_pearson_interval", "binomial_p_value",
                     "max_disagreements", "min_n_to_pass", "n_needed_at_rate"], "bounds"),
    **dict.fromkeys(["fixed_grid", "quantile_grid", "ThresholdGrid", "counts_at_thresholds",
                     "GRID_KINDS"], "grid"),
    **dict.fromkeys(["PROCEDURES", "Selection", "select_thresholds"], "testing"),
    **dict.fromkeys(["SelectiveCalibrator", "CalibrationResult", "NotCalibratedError",
                     "check_alpha", "check_delta"], "calibrator"),
    **dict.fromkeys(["CascadeCalibrator", "DELTA_SPLITS"], "cascade"),
    **dict.fromkeys(["auroc", "ranking_risk", "risk_coverage_curve", "aurc", "reliability_bins",
                     "ReliabilityBins", "expected_calibration_error", "selective_agreement"],
                    "metrics"),
    **dict.fromkeys(["ESCALATE", "Routing", "certificate_thresholds", "deciding_stage", "route"],
                    "routing"),
    **dict.fromkeys(["drift", "monotonicity", "calibration_size"], "diagnostics"),
    **dict.fromkeys(["choose_confidence", "choose_confidence_table", "predicted_coverage",
                     "validity_study_auto"], "select"),
    **dict.fromkeys(["validity_study", "validity_study_from_agreement", "ValidityResult",
                     "DESIGNS", "calibrate_batch"], "validity"),
    **dict.fromkeys(["audit", "AuditResult", "audit_p_value", "betting_e_values",
                     "sequential_rejections", "exact_power"], "audit"),
    **dict.fromkeys(["GroupedCalibrator", "route_by_group", "group_deltas",
                     "labels_needed", "groups_record", "thresholds_from_record",
                     "thresholds_per_item"], "groups"),
    **dict.fromkeys(["explain", "count_unreadable", "KINDS"], "reasons"),
    **dict.fromkeys(["decide", "Decisions"], "decide"),
    **dict.fromkeys(["piled_up_judges", "piled_up_groups"], "generated"),
    **dict.fromkeys(["group_validity_study", "GroupValidityResult", "judge_thresholds"],
                    "group_validity"),
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
