"""fit: the MARC confidence model, trained locally or on Ray Train, swept on Ray Tune.

Public API (torch and ray are imported only when a name that needs them is used):

``FitConfig``             every setting, validated once (``marc_ray.fit.config``)
``MarcConfidence``        the estimator: ``MarcConfidence(config).fit(annotations)``, ``.score``,
                          ``.save(folder)``, ``MarcConfidence.load(folder)``
``fit_confidence_model``  ``fit_confidence_model(annotations, config)`` → a fitted MarcConfidence
``score_annotations``     add ``conf_marc`` / ``conf_vanilla`` to an annotation file (atomic write)
``tune_margin``           the Ray Tune sweep over margin, learning rate, width and temperature
``confidence_measures``   the four measures (predictive, simulated, vanilla, MARC) side by side
``evaluate_measures``     their held-out ranking risk and AUROC
"""

from __future__ import annotations

import importlib

from .config import FitConfig

_LAZY = {
    "MarcConfidence": "estimator",
    "fit_confidence_model": "estimator",
    "score_annotations": "score",
    "tune_margin": "tune",
    "confidence_measures": "baselines",
    "evaluate_measures": "baselines",
}

__all__ = ["FitConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
