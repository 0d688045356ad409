"""Ranking quality of a confidence measure: AUROC and ranking risk RK = 1 − AUROC.

The calibrate stage owns these metrics; the fit stage uses them (no second copy):
RK = P(C(s_i) < C(s_j)) for a random agreement case i and disagreement case j, ties one half,
NaN when either class is empty.
"""

from __future__ import annotations

from ..calibrate.metrics import auroc, ranking_risk

__all__ = ["auroc", "ranking_risk"]
