"""The demo's named models: every earlier draw unchanged, the known preferences recovered."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from marc_ray.demo import DemoSpec, generate_demo, true_win_rate

# sha256 of json.dumps([comparisons, pool]) of generate_demo() before models were named (commit
# 571a2d5): naming models must not move any other draw (the demo's certificate is in the docs)
BEFORE_MODELS = "dd9e18149c5cf6f3af45569e9070453bb6ad0080754620b6852d13191be95fcb"


def test_every_earlier_draw_is_unchanged():
    comparisons, pool = generate_demo()
    stripped = [{k: v for k, v in row.items() if k not in ("model_a", "model_b")} for row in comparisons]
    assert hashlib.sha256(json.dumps([stripped, pool]).encode()).hexdigest() == BEFORE_MODELS
    assert all(row["model_a"] != row["model_b"] for row in comparisons)


def test_the_right_response_goes_to_the_stronger_model_at_the_known_rate():
    spec = DemoSpec(n_items=6000, seed=3)
    comparisons, _ = generate_demo(spec)
    wins, games = {}, {}
    for row in comparisons:
        if row["truth"] is None:
            continue
        winner = row["model_a"] if row["truth"] == "a" else row["model_b"]
        pair = tuple(sorted((row["model_a"], row["model_b"])))
        games[pair] = games.get(pair, 0) + 1
        wins[pair] = wins.get(pair, 0) + (winner == pair[0])
    assert len(games) == 3
    for pair, n in games.items():
        expected = true_win_rate(spec, *pair)
        assert abs(wins[pair] / n - expected) < 4 * np.sqrt(expected * (1 - expected) / n)
