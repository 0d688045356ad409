"""The report's figures (matplotlib, Agg backend), each a function of plain arrays.

Every function returns a ``matplotlib.figure.Figure`` with a title, labelled axes and a legend;
:func:`to_png_base64` turns one into the string the HTML report embeds. Nothing here computes
a guarantee: the numbers come from the certificate and the diagnostics.
"""

from __future__ import annotations

import base64
import io
import math

import matplotlib

matplotlib.use("Agg")  # headless: the report is rendered on clusters and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ALPHA_COLOR, LAMBDA_COLOR, ESCALATE_COLOR = "#c0392b", "#2c3e50", "#b0b0b0"
SPLIT_COLORS = {"calibration": "#2874a6", "deployment": "#d68910", "test": "#d68910"}


def to_png_base64(figure, dpi: int = 110) -> str:
    """PNG bytes of ``figure``, base64-encoded (the figure is closed afterwards)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plot_risk_coverage(curves: dict[str, tuple[np.ndarray, np.ndarray]], alpha: float,
                       operating_points: dict[str, tuple[float, float]] | None = None,
                       title: str = "Risk-coverage curve"):
    """Disagreement risk against coverage, per split, with α and the certified operating point.

    Parameters
    ----------
    curves : dict name → (coverage, risk)
    alpha : float
    operating_points : dict name → (coverage, risk) at λ̂, optional
    """
    figure, axis = plt.subplots(figsize=(6.2, 4.2))
    for name, (coverage, risk) in curves.items():
        axis.plot(coverage, risk, color=SPLIT_COLORS.get(name), label=f"{name} set")
    axis.axhline(alpha, color=ALPHA_COLOR, linestyle="--", label=f"target risk alpha = {alpha:g}")
    for name, (coverage, risk) in (operating_points or {}).items():
        axis.plot([coverage], [risk], "o", color=SPLIT_COLORS.get(name), markersize=8,
                  markeredgecolor="black", label=f"certified threshold ({name})")
    axis.set_xlabel("coverage (share of items the judge decides)")
    axis.set_ylabel("risk (disagreement with humans among decided)")
    axis.set_xlim(0, 1.02)
    axis.set_ylim(0, max(0.05, min(1.0, 1.6 * max([alpha] + [float(np.max(r[min(len(r) - 1, 9):]))
                                                      for _, r in curves.values() if len(r)]))))
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", fontsize=8)
    return figure


def plot_threshold_scan(grid: np.ndarray, risk: np.ndarray, bound: np.ndarray, n: np.ndarray,
                        alpha: float, threshold: float, title: str = "Fixed-sequence testing"):
    """Empirical risk and its upper confidence bound at each grid threshold, scanned from the top.

    Parameters
    ----------
    grid : ndarray of shape (n_thresholds,)
    risk, bound : ndarray of shape (n_thresholds,)
        k/n and the Clopper–Pearson bound at each threshold (NaN where n = 0).
    n : ndarray of shape (n_thresholds,)
        Accepted items at each threshold (right axis).
    alpha, threshold : float
        Target and λ̂ (``inf`` when nothing passed).
    """
    figure, axis = plt.subplots(figsize=(6.2, 4.2))
    axis.plot(grid, bound, color=ALPHA_COLOR, label="upper bound on risk (1 - delta)")
    axis.plot(grid, risk, color="#2874a6", label="empirical risk k / n")
    axis.axhline(alpha, color=ALPHA_COLOR, linestyle="--", linewidth=1, label=f"alpha = {alpha:g}")
    if math.isfinite(threshold):
        axis.axvline(threshold, color=LAMBDA_COLOR, linestyle=":", label=f"lambda-hat = {threshold:.3g}")
    n = np.asarray(n)
    changing = np.flatnonzero((n > n.min()) & (n < n.max()))
    if changing.size:  # zoom on where the accepted set changes (a [0, 1] grid wastes the plot)
        low, high = float(grid[changing].min()), float(grid[changing].max())
        pad = 0.08 * max(high - low, 1e-3)
        axis.set_xlim(low - pad, high + pad)
    axis.set_xlabel("confidence threshold (tested from the highest down)")
    axis.set_ylabel("risk")
    axis.set_ylim(0, 1)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    twin = axis.twinx()
    twin.plot(grid, n, color="#7f8c8d", linewidth=0.8, alpha=0.6, label="n accepted (right axis)")
    twin.set_ylabel("n calibration items accepted")
    lines = axis.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    axis.legend(lines[0] + more[0], lines[1] + more[1], loc="upper right", fontsize=8)
    return figure


def plot_reliability(mean_confidence: np.ndarray, agreement: np.ndarray, counts: np.ndarray,
                     measure: str, title: str = "Reliability diagram"):
    """Observed agreement per confidence bin against the bin's mean confidence.

    A learned score (MARC) ranks items and need not be a probability, so points off the
    diagonal do not invalidate the certificate; what matters for coverage is the ordering.
    """
    figure, axis = plt.subplots(figsize=(5.2, 4.4))
    counts = np.asarray(counts, dtype=float)
    sizes = 20 + 180 * counts / max(1.0, counts.max()) if counts.size else 20
    axis.plot([0, 1], [0, 1], color="#7f8c8d", linestyle="--", label="perfectly calibrated")
    axis.plot(mean_confidence, agreement, color="#2874a6", marker=None)
    axis.scatter(mean_confidence, agreement, s=sizes, color="#2874a6", zorder=3,
                 label="confidence bins (size: items)")
    axis.set_xlabel(f"mean confidence in the bin ({measure})")
    axis.set_ylabel("observed agreement with humans")
    low = float(min(0.4, np.min(mean_confidence) if len(mean_confidence) else 0.4,
                    np.min(agreement) if len(agreement) else 0.4))
    axis.set_xlim(low - 0.02, 1.01)
    axis.set_ylim(low - 0.02, 1.01)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", fontsize=8)
    return figure


def plot_confidence_histograms(samples: dict[str, np.ndarray], threshold: float, measure: str,
                               title: str = "Confidence distributions"):
    """Histograms of the confidence per split, with λ̂ and the escalated share of each split."""
    figure, axis = plt.subplots(figsize=(6.2, 4.2))
    finite = [np.asarray(v, dtype=float)[np.isfinite(v)] for v in samples.values()]
    values = np.concatenate(finite) if finite else np.array([0.0, 1.0])
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    bins = np.linspace(low, high if high > low else low + 1e-3, 26)
    for (name, data), clean in zip(samples.items(), finite):
        escalated = float(np.mean(~(clean >= threshold))) if clean.size else math.nan
        axis.hist(clean, bins=bins, density=True, alpha=0.45, color=SPLIT_COLORS.get(name),
                  label=f"{name} (n = {clean.size}; escalated {escalated:.0%})")
    if math.isfinite(threshold):
        axis.axvline(threshold, color=LAMBDA_COLOR, linestyle=":", linewidth=2,
                     label=f"lambda-hat = {threshold:.3g}")
        axis.axvspan(low, threshold, color=ESCALATE_COLOR, alpha=0.15, label="escalated region")
    axis.set_xlabel(f"confidence ({measure})")
    axis.set_ylabel("density")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", fontsize=8)
    if not math.isfinite(threshold):
        note_below_axes(axis, "no threshold passed: every item is escalated")
    return figure


def note_below_axes(axis, text: str) -> None:
    """A note under the axes' x label, outside the plotting area: no legend (always inside the
    axes or beside them) and no data can cover it."""
    axis.annotate(text, xy=(0.5, 0), xycoords="axes fraction", xytext=(0, -34),
                  textcoords="offset points", ha="center", va="top", color=ALPHA_COLOR,
                  fontweight="bold")


def plot_routing(shares: dict[str, dict[str, float]], stage_names: list[str],
                 title: str = "Cascade routing"):
    """Stacked horizontal bars: share of items each judge decided, and the escalated share.

    Parameters
    ----------
    shares : dict split name → {stage name or "escalated": share}
    stage_names : list of str, in cascade order
    """
    figure, axis = plt.subplots(figsize=(6.6, 1.2 + 0.6 * len(shares)))
    palette = ["#1e8449", "#2874a6", "#8e44ad", "#d68910", "#16a085"]
    names = list(shares)
    left = np.zeros(len(names))
    for l, stage in enumerate(stage_names + ["escalated"]):
        widths = np.array([shares[name].get(stage, 0.0) for name in names])
        color = ESCALATE_COLOR if stage == "escalated" else palette[l % len(palette)]
        label = "escalated to humans" if stage == "escalated" else f"decided by {stage}"
        bars = axis.barh(names, widths, left=left, color=color, label=label)
        for bar, width in zip(bars, widths):
            if width >= 0.06:
                axis.text(bar.get_x() + width / 2, bar.get_y() + bar.get_height() / 2,
                          f"{width:.0%}", ha="center", va="center", fontsize=8, color="white")
        left += widths
    axis.set_xlim(0, 1)
    axis.set_xlabel("share of items")
    axis.set_ylabel("item set")
    axis.set_title(title)
    axis.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return figure


def plot_measures(measures: dict[str, dict], title: str = "Confidence measures compared"):
    """AUROC of each confidence measure for predicting agreement (higher ranks better)."""
    names = list(measures)
    values = [measures[name].get("auroc", math.nan) for name in names]
    figure, axis = plt.subplots(figsize=(6.2, 0.9 + 0.45 * max(1, len(names))))
    axis.barh(names, values, color="#2874a6")
    for index, value in enumerate(values):
        if math.isfinite(value):
            axis.text(value + 0.01, index, f"{value:.3f}", va="center", fontsize=8)
    axis.axvline(0.5, color="#7f8c8d", linestyle="--", label="chance (0.5)")
    axis.set_xlim(0, 1.08)
    axis.set_xlabel("AUROC of confidence for agreement (test set)")
    axis.set_ylabel("confidence measure")
    axis.set_title(title)
    # beside the axes: inside, it covered the value printed at the end of a long bar
    axis.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return figure


def plot_cost_coverage(points: dict[str, dict[str, tuple[float, float]]], frontier: list[str],
                       unit: str, title: str = "Cost against certified coverage"):
    """Expected cost per item against certified coverage: the cascade and each judge alone.

    Parameters
    ----------
    points : dict point name → {item-set name: (cost, coverage)}; the first is the cascade
    frontier : names on the frontier (of the first item set), cheapest first: joined by a line
    unit : the cost axis' unit ("cost per item", "judge calls per item")
    """
    figure, axis = plt.subplots(figsize=(6.2, 4.2))
    palette = ["#c0392b", "#1e8449", "#2874a6", "#8e44ad", "#d68910", "#16a085"]
    markers = {"calibration": "o", "test": "s", "deployment": "s"}
    for index, (name, by_set) in enumerate(points.items()):
        for set_name, (cost, coverage) in by_set.items():
            color = palette[index % len(palette)]
            filled = set_name == "calibration"
            axis.plot([cost], [coverage], markers.get(set_name, "o"), color=color,
                      markersize=11 if index == 0 else 8, markeredgewidth=1 if filled else 2,
                      markeredgecolor="black" if filled else color,
                      fillstyle="full" if filled else "none", label=f"{name} ({set_name})")
    first = next(iter(next(iter(points.values()))), None)
    if first is not None and len(frontier) > 1:
        line = [points[name][first] for name in frontier]
        # a step: between two frontier points the cheaper one's coverage is what that cost buys
        axis.plot([c for c, _ in line], [v for _, v in line], "--", color="#7f8c8d", linewidth=1,
                  drawstyle="steps-post", label=f"frontier ({first})")
    axis.set_xlabel(f"expected {unit}")
    axis.set_ylabel("certified coverage (share of items decided)")
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlim(left=0)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return figure
