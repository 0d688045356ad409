"""A finished run folder built from real parts (contracts, the calibrator, Parquet, JSON),
with named models whose true Bradley-Terry strengths are known: what the win-rate tests read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.special import expit

from marc_ray.calibrate.calibrator import SelectiveCalibrator
from marc_ray.calibrate.grid import fixed_grid
from marc_ray.contracts import validate_comparisons
from marc_ray.run_folder import RunFolder

STRENGTHS = {"alpha-7b": 0.8, "beta-7b": 0.0, "gamma-7b": -0.8}
JUDGE = "toy-judge"


def build_run(root: Path, n: int = 900, seed: int = 0, tie_share: float = 0.05,
              splits=(0.3, 0.4, 0.3), fitted: bool = True, tie_policy: str = "drop",
              models: dict | None = None, mutate=None) -> Path:
    """Write ``root`` as a run folder; ``mutate(rows)`` may edit the comparison rows first."""
    rng = np.random.default_rng(seed)
    strengths = models or STRENGTHS
    names = list(strengths)
    first = rng.integers(len(names), size=n)
    second = (first + rng.integers(1, len(names), size=n)) % len(names)
    beta = np.array([strengths[m] for m in names])
    a_wins = rng.random(n) < expit(beta[first] - beta[second])
    label = np.where(a_wins, "a", "b").astype(object)
    label[rng.random(n) < tie_share] = "tie"
    p_a = expit(1.6 * (2 * a_wins - 1) + 0.4 + rng.standard_normal(n))  # informative, biased to a
    pred = np.where(p_a >= 0.5, "a", "b").astype(object)
    confidence = np.maximum(p_a, 1 - p_a)
    split = rng.choice(["train", "calibration", "test"], size=n, p=list(splits))
    ids = [f"item-{i:04d}" for i in range(n)]
    rows = [{"id": ids[i], "instruction": f"q{i}", "response_a": "x", "response_b": "y",
             "human_label": label[i], "split": split[i], "model_a": names[first[i]],
             "model_b": names[second[i]]} for i in range(n)]
    if mutate:
        mutate(rows)
    folder = RunFolder(str(root))
    Path(folder.data_dir).mkdir(parents=True, exist_ok=True)
    pq.write_table(validate_comparisons(pa.Table.from_pylist(rows), "toy"), folder.comparisons)
    Path(folder.scores(JUDGE)).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ids, "judge": [JUDGE] * n, "pred": pred.tolist(),
                             "p_simulated": p_a, "conf_simulated": confidence,
                             "human_label": [r["human_label"] for r in rows],
                             "split": [r["split"] for r in rows]}), folder.scores(JUDGE))
    calibration = split == "calibration"
    calibrator = SelectiveCalibrator(alpha=0.2, delta=0.1, grid=fixed_grid(100, 0.5, 1.0),
                                     tie_policy=tie_policy).calibrate(
        confidence[calibration], pred[calibration], label[calibration], names=[JUDGE])
    Path(folder.certificate).parent.mkdir(parents=True, exist_ok=True)
    calibrator.certificate("sha256:toy", confidence_names=["conf_simulated"]).write(folder.certificate)
    if fitted:  # a fitted confidence model's saved record (fit.estimator.save's keys read here)
        model_dir = Path(folder.path("fit", JUDGE))
        model_dir.mkdir(parents=True, exist_ok=True)
        valid = [ids[i] for i in np.flatnonzero(split == "test")[:10]]
        (model_dir / "config.json").write_text(json.dumps({
            "fit_config": {"train_splits": ["train"], "valid_splits": []}, "valid_ids": valid}))
    return root
