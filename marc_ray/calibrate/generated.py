"""Generated judges whose confidences pile up near 1: the case the test design exists for.

Real judges' vote shares and probabilities crowd at 1 (issue 25, measured on LLMBar and
PandaLM), so the first grid points of a fixed grid already hold many items, and a fine grid
starts its scan on a tiny slice that can fail by chance. The tests of ``calibrate.design`` and
``benchmarks/bench_cascade_design.py`` draw the same judges from here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["piled_up_judges", "piled_up_groups", "PILED_UP_QUALITY"]

# agreement at confidence 1 of a weak, middle and strong judge: the weak one certifies nothing
# at alpha 0.15, the middle one a large share, the strong one nearly everything
PILED_UP_QUALITY = (0.80, 0.93, 0.95)


def piled_up_judges(n_items: int = 1000, seed: int = 0, *, prefix: str = "g",
                    quality: Sequence[float] = PILED_UP_QUALITY) -> dict:
    """Items judged by ``len(quality)`` judges whose confidences pile up near 1.

    Judge ``j``'s confidence is ``1 - Beta(0.3, 3 + 3 j) / 2`` clipped to [0.5, 1] (later
    judges pile up more); it agrees with the human label with probability
    ``0.5 + (c - 0.5) * 2 * (quality[j] - 0.5)``: chance at 0.5, ``quality[j]`` at 1.

    Returns
    -------
    dict
        ``confidence`` (n, L) floats, ``pred`` (n, L) "a" / "b", ``human_label`` (n,) and
        ``ids`` (n,) ``f"{prefix}{i}"``: the keys ``calibrate.design`` reads.
    """
    rng = np.random.default_rng(seed)
    human = np.where(rng.random(n_items) < 0.5, "a", "b").astype(object)
    confidence = np.empty((n_items, len(quality)))
    pred = np.empty((n_items, len(quality)), dtype=object)
    for j, q in enumerate(quality):
        c = np.clip(1 - rng.beta(0.3, 3 + 3 * j, n_items) * 0.5, 0.5, 1.0)
        agree = rng.random(n_items) < 0.5 + (c - 0.5) * 2 * (q - 0.5)
        pred[:, j] = np.where(agree, human, np.where(human == "a", "b", "a"))
        confidence[:, j] = c
    return {"confidence": confidence, "pred": pred, "human_label": human,
            "ids": np.array([f"{prefix}{i}" for i in range(n_items)], dtype=object)}


def piled_up_groups(sizes: dict[str, int], seed: int = 0, *, prefix: str = "g",
                    qualities: dict[str, Sequence[float]] | None = None) -> dict:
    """:func:`piled_up_judges` per group, stacked, with a ``groups`` column: the same judges
    are weaker on one group than on another (default: group "A" (0.86, 0.95), group "B"
    (0.93, 0.97), two judges). Group ``g`` is drawn with seed ``seed + 500 * position``."""
    qualities = qualities or {"A": (0.86, 0.95), "B": (0.93, 0.97)}
    parts = [piled_up_judges(n, seed + 500 * position, prefix=f"{prefix}{group}",
                             quality=qualities[group])
             for position, (group, n) in enumerate(sizes.items())]
    data = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    data["groups"] = np.concatenate([np.full(n, group, dtype=object) for group, n in sizes.items()])
    return data
