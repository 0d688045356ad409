"""The thin Ray-job entry points for calibrate and apply, run as `ray job submit` runs them
(``python jobs/X.py ...``; jobs/pipeline.py is submitted for real in test_job_submit.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from marc_ray.contracts import Certificate

REPO = Path(__file__).resolve().parents[2]


def job(name: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_AUTH_MODE="disabled")
    return subprocess.run([sys.executable, str(REPO / "jobs" / f"{name}.py"), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def scores(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "scores.jsonl"
    with open(path, "w") as stream:
        for i in range(1500):
            confidence = float(rng.uniform(0.5, 1.0))
            human = "a" if rng.random() < confidence else "b"
            stream.write(json.dumps({"id": f"i{i}", "conf": confidence, "pred": "a",
                                     "human_label": human}) + "\n")
    return path


def test_calibrate_job_certifies_and_checks_validity_with_the_same_settings(scores, tmp_path):
    out = tmp_path / "cal"
    result = job("calibrate", str(scores), "--confidence-column", "conf", "--alpha", "0.15",
                 "--delta", "0.05", "--grid-size", "50", "--tie-policy", "disagree",
                 "--out", str(out), "--validity", "200")
    assert result.returncode == 0, result.stderr[-2000:]
    certificate = Certificate.read(out / "certificate.json")
    validity = json.loads((out / "validity" / "validity.json").read_text())
    assert (certificate.alpha, certificate.delta, certificate.tie_policy) == (0.15, 0.05, "disagree")
    assert (validity["alpha"], validity["delta"], validity["tie_policy"]) == (0.15, 0.05, "disagree")
    assert validity["n_repetitions"] == 200 and validity["confidence"] == "conf"
    assert validity["success_rate"] >= 0.95 - 3 * (0.05 * 0.95 / 200) ** 0.5  # 1 - delta, with slack
    assert "With 95% confidence" in result.stdout and "repetitions" in result.stdout


def test_calibrate_job_bad_input_exits_2_naming_the_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "conf": 2.0, "pred": "a", "human_label": "a"}\n')
    result = job("calibrate", str(bad), "--confidence-column", "conf", "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "bad.jsonl, row 0, field 'conf'" in result.stderr
    assert not (tmp_path / "o").exists()


def test_apply_job_refuses_a_folder_that_is_not_a_run(tmp_path):
    items = tmp_path / "new.jsonl"
    items.write_text('{"id": "x", "instruction": "i", "response_a": "a", "response_b": "b"}\n')
    result = job("apply", str(tmp_path), str(items), "--out", str(tmp_path / "out"))
    assert result.returncode != 0
    assert "not a marc_ray run folder (no config.yaml)" in result.stderr
    assert not (tmp_path / "out").exists()
