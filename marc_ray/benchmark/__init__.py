"""The real-data benchmark: how much can a judge decide under a guarantee, per confidence measure?

For each dataset of the configuration (a public human-preference set whose judge verdicts ship
with it), this module

1. loads the comparisons and verdicts (:mod:`marc_ray.datasets`) and replays them as a judge
   panel (:func:`marc_ray.annotate.replay.panel_annotations`): the *target* judge's own verdicts
   in both orders are the zero-shot runs, every (judge, prompt variant) is a simulated
   annotator;
2. splits the items, seeded, into a *fit* part (trains the learned measures) and an
   *evaluation* part (group-aware when ``split_by: group``), so every figure is held out;
3. scores four confidence measures on the evaluation part, each with its own verdict:

   ==============  ==========================================  ===========================
   measure         confidence                                  verdict
   ==============  ==========================================  ===========================
   predictive      ``conf_predictive`` (target, both orders)   argmax of ``p_predictive``
   simulated       ``conf_simulated`` (the panel's vote share)  ``pred``
   vanilla         ``conf_vanilla`` (learned, fixed margin)     ``pred``
   marc            ``conf_marc`` (learned, adaptive margin)     ``pred``
   ==============  ==========================================  ===========================

   (an item whose target verdicts are all unusable gets predictive confidence 0.5, the least
   a max-probability can be, and the panel's verdict);
4. reports AUROC, ranking risk (1 − AUROC) and ECE of each measure against agreement with the
   human label, and, over ``n_repetitions`` seeded repetitions in both validity designs
   (``population``: calibration sets drawn with replacement, success judged on the whole
   evaluation part; ``split``: random calibration/test splits), the guarantee success rate
   with its exact 95% interval and the mean coverage, for every α at the configured δ, for
   the single target judge and for a cascade of judges (cheapest first, δ split equally).

The same random state is used for every measure at a given (dataset, design, α), so the
measures are compared on the same calibration draws.

Outputs (written atomically into the output folder): ``metrics.csv``, ``validity.csv``,
``benchmark.md`` and ``coverage_vs_alpha.png``, with ``manifest.json`` (configuration, seeds,
package versions, data hashes, the command).

The package, read top to bottom: ``config`` (the YAML settings), ``panels`` (data, fit /
evaluation parts, the measures), ``validity`` (the cascade validity study), ``loop`` (the run)
and ``render`` (the outputs).
"""

from __future__ import annotations

from .config import DESIGNS, LEARNED, MEASURES, SPLIT_BY, BenchmarkConfig, DatasetSpec
from .loop import run_benchmark
from .panels import Scored, fit_mask, score_judge, usable
from .render import plot_coverage, render_markdown, write_outputs
from .validity import cascade_validity

__all__ = ["BenchmarkConfig", "DESIGNS", "DatasetSpec", "LEARNED", "MEASURES", "SPLIT_BY", "Scored",
           "cascade_validity", "fit_mask", "plot_coverage", "render_markdown", "run_benchmark",
           "score_judge", "usable", "write_outputs"]
