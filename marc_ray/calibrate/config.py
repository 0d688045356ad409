"""CalibrateConfig: the calibrate stage's settings (the pipeline's ``calibrate:`` section).

The guarantee's α and δ, the grid λ̂ is searched on, the measure certified and how a cascade or a
grouped certificate splits δ. ``validate`` checks the section on its own; the pipeline adds the
checks that need other sections (a learned measure needs the fit stage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..contracts import TIE_POLICIES, carry_problem, extra_carried
from ..contracts.options import comma_list, option, word_or
from ..contracts.validation import (check_choice, check_number, check_section_types, fail,
                                    is_number)

# Confidence measures the pipeline can calibrate on: the two heuristics every annotation row
# carries, and the learned models the fit stage writes (``MarcConfidence.column``).
CONFIDENCE_MEASURES: dict[str, str] = {
    "conf_predictive": "predictive probability: zero-shot, both orders averaged (baseline)",
    "conf_simulated": "simulated annotators (Jung et al. 2025): mean over annotators and orders",
    "conf_marc": "MARC: learned C_theta with the adaptive margin (needs the fit stage)",
    "conf_vanilla": "vanilla learned: the same network with a fixed margin (fit.variant: vanilla)",
}
LEARNED_MEASURES = ("conf_marc", "conf_vanilla")
AUTO = "auto"  # calibrate.confidence: chosen on the training split's validation part (select.py)
# calibrate.design (calibrate/design.py): how a designed cascade splits delta across its stages,
# and how likely the training rows must predict the first tested threshold to pass
DESIGN_DELTA_SPLITS: dict[str, str] = {
    "equal": "delta / L per stage",
    "coverage": "in proportion to each stage's predicted coverage",
    "optimised": "the split on a simplex grid (steps of 1/10) with the largest predicted cascade "
                 "coverage (with costs: the cheapest within 2% of it)"}
DESIGN_ORDERS: dict[str, str] = {
    "given": "the order the judges are listed in (cheapest first)",
    "cost": "by cost per predicted decided item (cheapest per decision first)"}
DEFAULT_PASS_PROBABILITY = 0.99  # start where the training rows predict a pass at least this likely
# A million thresholds already resolve confidences to 1e-6; more only exhausts memory.
MAX_GRID_POINTS = 1_000_000
GRIDS: dict[str, str] = {
    "fixed": "evenly spaced thresholds between grid_low and grid_high, fixed in advance",
    "quantile": "quantiles of the training split's scores (disjoint from calibration)",
}


@dataclass
class CalibrateConfig:
    """Calibration settings (``marc_ray.calibrate``): the guarantee's α and δ and how λ̂ is found."""

    alpha: float = option(0.1, "tolerated disagreement among decided items: agreement >= "
                          "1 - alpha (e.g. 0.1 for 90% agreement)")
    delta: float = option(0.1, "error level: the guarantee holds with probability >= 1 - delta "
                          "over the draw of the calibration items")
    procedure: str = option("fixed_sequence", "how the grid's thresholds are tested: one of "
                            "calibrate.testing.PROCEDURES")
    grid: str = option("fixed", "one of GRIDS; never thresholds read off the calibration scores")
    n_grid: int = option(200, "thresholds in the grid, fixed in advance (fixed-sequence pays "
                         "nothing for more)")
    grid_low: float = option(0.0, "lowest threshold of the fixed grid (heuristic confidences "
                             "live in [0.5, 1])")
    grid_high: float = option(1.0, "highest threshold of the fixed grid")
    min_n: Any = option("auto", "skip thresholds accepting fewer calibration items; auto = the "
                        "fewest with which a threshold can pass at all",
                        parse=word_or("auto", int, "N|auto"))
    tie_policy: str = option("drop", "how a human tie counts: one of contracts.TIE_POLICIES")
    confidence: str = option("conf_marc", "the measure certified (one of CONFIDENCE_MEASURES, or "
                             "auto: chosen on the training split's validation part, "
                             "calibrate/select.py)")
    compare: list = option(["conf_predictive", "conf_simulated", "conf_marc"],
                           "measures compared (AUROC, ranking risk) on the test split")
    delta_split: Any = option("equal", "cascades: 'equal' (delta / L per judge) or one positive "
                              "weight per judge, normalised to sum to delta",
                              parse=word_or("equal", comma_list(float), "equal|W,W,..."))
    drift_significance: float = option(0.01, "the drift warning fires when the KS test's p is "
                                       "below this")
    by: str | None = option(None, "a threshold per value of this column of the comparisons (a "
                            "task category, a dataset, a language: carried into every "
                            "annotation row), delta split across the groups by the union bound "
                            "(calibrate/groups.py)")
    exclude_seen: bool = option(False, "calibration rows that trained the confidence model, "
                                "chose the measure or built the grid: refused (false) or left "
                                "out and counted (true)")
    design: bool = option(False, "choose the grid, its start and a cascade's judges, order and "
                          "delta split on the train split (calibrate/design.py); the guarantee "
                          "holds as before")
    costs: list | None = option(None, "with design: a relative cost per judge, cheapest first "
                                "(e.g. price per 1k tokens); the cheapest design within 2% of "
                                "the best predicted coverage wins",
                                parse=comma_list(float, "C,C,..."))
    design_delta_split: str = option("optimised", "with design: a cascade's delta split, one of "
                                     "DESIGN_DELTA_SPLITS")
    design_pass_probability: float = option(DEFAULT_PASS_PROBABILITY, "with design: the scan "
                                            "starts where the train split predicts a pass at "
                                            "least this likely")

    def validate(self, source: str = "", n_judges: int = 1) -> "CalibrateConfig":
        """Check every field; raise ``ValueError`` in the package's one error form."""
        from .testing import PROCEDURES

        check_section_types(self, "calibrate", source)
        for name in ("alpha", "delta"):
            example = "0.15: at least 85% agreement" if name == "alpha" else "0.1: 90% confidence"
            check_number(f"calibrate.{name}", getattr(self, name), source, low=0, high=1,
                         low_open=True, high_open=True, what=f"a number in (0, 1) (e.g. {example})")
        check_choice("calibrate.procedure", self.procedure, PROCEDURES, source)
        check_choice("calibrate.grid", self.grid, GRIDS, source)
        check_choice("calibrate.tie_policy", self.tie_policy, TIE_POLICIES, source)
        check_choice("calibrate.confidence", self.confidence,
                     {**CONFIDENCE_MEASURES, AUTO: "choose on the training split's validation part"},
                     source)
        if self.by is not None:
            problem = group_column_problem(self.by)
            if problem is not None:
                raise ValueError(f"{source}: calibrate.by must name a column of the comparisons "
                                 f"(a task category, a dataset, a language): {problem}")
        for measure in self.compare:
            check_choice("calibrate.compare", measure, CONFIDENCE_MEASURES, source)
        check_number("calibrate.n_grid", self.n_grid, source, low=1, high=MAX_GRID_POINTS,
                     integer=True, what=f"an integer from 1 to {MAX_GRID_POINTS:,}")
        if not 0 <= self.grid_low < self.grid_high <= 1:
            raise ValueError(f"{source}: need 0 <= calibrate.grid_low < calibrate.grid_high <= 1, "
                             f"got {self.grid_low!r} and {self.grid_high!r}")
        if self.min_n != "auto":
            check_number("calibrate.min_n", self.min_n, source, low=1, integer=True,
                         what="'auto' or an integer >= 1")
        check_number("calibrate.drift_significance", self.drift_significance, source, low=0,
                     high=1, low_open=True, high_open=True, what="a number in (0, 1)")
        if not isinstance(self.design, bool):
            fail("calibrate.design", "true or false", self.design, source)
        if self.costs is not None and (not isinstance(self.costs, list) or len(self.costs) != n_judges
                                       or not all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                                  and c >= 0 for c in self.costs)):
            fail("calibrate.costs", f"a list of {n_judges} numbers >= 0 (one per judge, cheapest first)",
                 self.costs, source)
        check_choice("calibrate.design_delta_split", self.design_delta_split, DESIGN_DELTA_SPLITS,
                     source)
        check_number("calibrate.design_pass_probability", self.design_pass_probability, source,
                     low=0, high=1, low_open=True, high_open=True, what="a number in (0, 1)")
        if self.delta_split != "equal" and (
                not isinstance(self.delta_split, list) or len(self.delta_split) != n_judges
                or not all(is_number(w) and math.isfinite(w) and w > 0 for w in self.delta_split)):
            fail("calibrate.delta_split", f"'equal' or a list of {n_judges} positive weights (one "
                 "per judge)", self.delta_split, source)
        return self

    @property
    def carry(self) -> tuple[str, ...]:
        """The comparison column the judges must carry into their annotation rows beyond the
        contract's (``contracts.CARRIED_COLUMNS``) so ``by`` reaches the scores: ``(by,)`` or ``()``
        (also ``()`` for a name :meth:`validate` refuses)."""
        if self.by is None or group_column_problem(self.by) is not None:
            return ()
        return extra_carried((self.by,))


def group_column_problem(name) -> str | None:
    """Why ``calibrate.by`` cannot name ``name`` (None: it can): it must be able to ride in the
    annotation rows (``contracts.carry_problem``) and in decisions.parquet beside its columns.
    Whether the comparisons have it is checked when they are read (the prepare stage)."""
    from .decide import DECISION_COLUMNS

    problem = carry_problem(name)
    if problem is None and name in DECISION_COLUMNS:
        problem = f"{name!r} is a column of decisions.parquet ({', '.join(DECISION_COLUMNS)})"
    return problem
