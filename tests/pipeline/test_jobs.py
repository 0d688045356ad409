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


def test_calibrate_and_validity_jobs_take_the_commands_flags(scores, tmp_path):
    out = tmp_path / "cal"
    shared = ["--confidence-column", "conf", "--alpha", "0.15", "--delta", "0.05",
              "--grid-size", "50", "--tie-policy", "disagree"]
    result = job("calibrate", str(scores), *shared, "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "With 95% confidence" in result.stdout
    validity_out = tmp_path / "validity"
    result = job("validity", str(scores), *shared, "--repetitions", "200", "--out", str(validity_out))
    assert result.returncode == 0, result.stderr[-2000:]
    certificate = Certificate.read(out / "certificate.json")
    validity = json.loads((validity_out / "validity.json").read_text())
    assert (certificate.alpha, certificate.delta, certificate.tie_policy) == (0.15, 0.05, "disagree")
    assert (validity["alpha"], validity["delta"], validity["tie_policy"]) == (0.15, 0.05, "disagree")
    assert validity["n_repetitions"] == 200 and validity["confidence"] == "conf"
    assert validity["success_rate"] >= 0.95 - 3 * (0.05 * 0.95 / 200) ** 0.5  # 1 - delta, with slack


def test_jobs_are_thin_wrappers_of_the_cli():
    """No job declares a flag or a default of its own: each hands its arguments to one command."""
    for path in (REPO / "jobs").glob("*.py"):
        text = path.read_text()
        assert "argparse" not in text and "add_argument" not in text, path.name
        assert "from marc_ray.cli import main" in text, path.name


def _write_items(path: Path, prefix: str, start: int, n: int) -> None:
    """Arithmetic items a 135M model ranks well (likelihood mode)."""
    with open(path, "w", encoding="utf-8") as stream:
        for i in range(start, start + n):
            right, wrong = str(i + 7), str(i + 9)
            stream.write(json.dumps({"id": f"{prefix}{i}", "instruction": f"What is {i} + 7?",
                                     "response_a": right if i % 2 else wrong,
                                     "response_b": wrong if i % 2 else right,
                                     "human_label": "a" if i % 2 else "b",
                                     "annotator": "ann-0"}) + "\n")


@pytest.mark.slow
def test_annotate_fit_and_tune_jobs_smoke(tmp_path):
    """The stage jobs in a row on tiny data, each starting its own local Ray as `python jobs/X.py`."""
    _write_items(tmp_path / "items.jsonl", "item-", 0, 12)
    _write_items(tmp_path / "pool.jsonl", "pool-", 100, 4)
    annotations = tmp_path / "annotations"
    result = job("annotate", "--input", str(tmp_path / "items.jsonl"), "--pool",
                 str(tmp_path / "pool.jsonl"), "--output", str(annotations), "--model", "smollm2",
                 "--mode", "likelihood", "--n-annotators", "1", "--k-shots", "1", "--shard-size", "6",
                 "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "annotate: 12 items in 2 shards" in result.stdout

    from marc_ray.fit.synthetic import all_subsets_layout, trap_annotations
    import pyarrow.parquet as pq

    pq.write_table(trap_annotations(300, layout=all_subsets_layout(3, 3), seed=0),
                   tmp_path / "trap.parquet")
    result = job("fit", str(tmp_path / "trap.parquet"), "--out", str(tmp_path / "marc"),
                 "--backend", "ray", "--num-workers", "1", "--epochs", "2",
                 "--storage-path", str(tmp_path / "train"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "marc" / "model.safetensors").is_file()
    result = job("tune", str(tmp_path / "trap.parquet"), "--out", str(tmp_path / "tuned"),
                 "--num-samples", "2", "--epochs", "1", "--storage", str(tmp_path / "tune"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "tuned" / "model.safetensors").is_file()


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
