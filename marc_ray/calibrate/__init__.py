"""Certified calibration: pick the confidence threshold above which a judge agrees with humans.

The public API (importing it loads no ray, torch or vllm):

* bounds: :func:`clopper_pearson_upper`, :func:`clopper_pearson_interval`,
  :func:`binomial_p_value`, :func:`max_disagreements`, :func:`min_n_to_pass`;
* grids: :func:`fixed_grid`, :func:`quantile_grid`, :class:`ThresholdGrid`,
  :func:`counts_at_thresholds`;
* procedures: :func:`select_thresholds` with ``PROCEDURES`` (fixed sequence, Bonferroni, Holm);
* estimators: :class:`SelectiveCalibrator`, :class:`CascadeCalibrator`;
* metrics: :func:`auroc`, :func:`ranking_risk`, :func:`risk_coverage_curve`, :func:`aurc`,
  :func:`reliability_bins`, :func:`expected_calibration_error`, :func:`selective_agreement`;
* the validity study: :func:`validity_study` (+ :func:`validity_study_from_agreement`,
  :func:`calibrate_batch`).

What the guarantee means, and what it does not: ``docs/guarantee.md``.
"""

from .bounds import (binomial_p_value, clopper_pearson_interval, clopper_pearson_upper,
                     max_disagreements, min_n_to_pass)
from .calibrator import (CalibrationResult, NotCalibratedError, SelectiveCalibrator, check_alpha,
                         check_delta)
from .cascade import DELTA_SPLITS, CascadeCalibrator
from .grid import GRID_KINDS, ThresholdGrid, counts_at_thresholds, fixed_grid, quantile_grid
from .metrics import (ReliabilityBins, aurc, auroc, expected_calibration_error, ranking_risk,
                      reliability_bins, risk_coverage_curve, selective_agreement)
from .testing import PROCEDURES, Selection, select_thresholds
from .validity import (DESIGNS, ValidityResult, calibrate_batch, validity_study,
                       validity_study_from_agreement)

__all__ = [
    "clopper_pearson_upper", "clopper_pearson_interval", "binomial_p_value", "max_disagreements",
    "min_n_to_pass",
    "fixed_grid", "quantile_grid", "ThresholdGrid", "counts_at_thresholds", "GRID_KINDS",
    "PROCEDURES", "Selection", "select_thresholds",
    "SelectiveCalibrator", "CalibrationResult", "NotCalibratedError", "check_alpha", "check_delta",
    "CascadeCalibrator", "DELTA_SPLITS",
    "auroc", "ranking_risk", "risk_coverage_curve", "aurc", "reliability_bins", "ReliabilityBins",
    "expected_calibration_error", "selective_agreement",
    "validity_study", "validity_study_from_agreement", "ValidityResult", "DESIGNS",
    "calibrate_batch",
]
