"""report: the transparent report of a certificate (HTML, Markdown, JSON) and its diagnostics.

``build_report(run_dir)`` reports a pipeline run; ``write_report(ReportInputs(...), out_dir)``
reports any certificate with its scored items. The diagnostics it shows (monotonicity, drift,
calibration size) are computed in ``marc_ray.calibrate.diagnostics``; ``plots`` work on plain
arrays. Importing this package loads no ray, torch or vllm.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "build_report": "collect",
    "write_report": "render",
    "ReportInputs": "summary",
    "ItemSet": "summary",      # defined in marc_ray.contracts.align
    "summarize": "summary",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
