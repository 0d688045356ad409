"""A replay run table for tests: every item's zero-shot run and two simulated annotators, both
orders, each P(response_a better) drawn around a per-item target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np


def write_replay_runs(path: Path, rows: list[dict], target: Callable, seed: int,
                      noise: float = 0.03) -> str:
    """Write the JSON-lines run table of ``rows`` to ``path``; return its path.

    ``target(row, rng)`` gives the item's P(response_a better) before noise (drawn from the
    same generator, first, so a table depends only on ``seed``).
    """
    rng = np.random.default_rng(seed)
    lines = []
    for row in rows:
        centre = target(row, rng)
        for annotator in ("zero", "sim-1", "sim-2"):
            for order in ("ab", "ba"):
                p = float(np.clip(centre + rng.normal(0, noise), 0.01, 0.99))
                lines.append(json.dumps({"id": row["id"], "annotator": annotator, "order": order,
                                         "p_response_a": p}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)
