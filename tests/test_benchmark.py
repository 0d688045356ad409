"""The real-data benchmark: configuration errors, the cascade validity study against the
cascade calibrator, and a reduced end-to-end run through the CLI (configs/benchmark_ci.yaml)."""

import csv
from pathlib import Path

import numpy as np
import pytest

from marc_ray.benchmark import BenchmarkConfig, cascade_validity
from marc_ray.calibrate import CascadeCalibrator, fixed_grid
from marc_ray.cli import main
from marc_ray.contracts import ContractError, read_table, validate_annotations

REPO = Path(__file__).resolve().parents[1]


def test_config_errors(tmp_path):
    base = {"datasets": [{"name": "llmbar", "target": "GPT-4"}]}
    with pytest.raises(ContractError, match=r"field 'n_repetition': unknown key 'n_repetition'"):
        BenchmarkConfig.from_dict({**base, "n_repetition": 10})
    with pytest.raises(ContractError, match=r"row 0, field 'cascades': unknown key"):
        BenchmarkConfig.from_dict({"datasets": [{"name": "llmbar", "target": "GPT-4", "cascades": []}]})
    with pytest.raises(ValueError, match=r"measures must be a non-empty subset of \['predictive'"):
        BenchmarkConfig.from_dict({**base, "measures": ["margin"]})
    with pytest.raises(ValueError, match=r"unknown dataset 'llm_bar'"):
        BenchmarkConfig.from_dict({"datasets": [{"name": "llm_bar", "target": "GPT-4"}]})
    with pytest.raises(ValueError, match=r"the cascade \['LLaMA2'\] must include the target 'GPT-4'"):
        BenchmarkConfig.from_dict({"datasets": [{"name": "llmbar", "target": "GPT-4", "cascade": ["LLaMA2"]}]})
    with pytest.raises(ValueError, match=r"unique labels, got \['llmbar', 'llmbar'\]"):
        BenchmarkConfig.from_dict({"datasets": base["datasets"] * 2})
    with pytest.raises(ValueError, match=r"panel must be a list of judges, null or 'self', got 'all'"):
        BenchmarkConfig.from_dict({"datasets": [{"name": "llmbar", "target": "GPT-4", "panel": "all"}]})
    with pytest.raises(ContractError, match="no such file"):
        BenchmarkConfig.from_yaml(tmp_path / "missing.yaml")


def _oracle(confidences, agrees, alpha, delta, calibration, grid):
    """Per repetition: CascadeCalibrator on the drawn calibration items, judged on the whole file."""
    success, coverage = [], []
    for rows in calibration:
        # agreement is encoded as the verdict "a" against a human label that is always "a"
        cascade = CascadeCalibrator(alpha=alpha, delta=delta, grid=grid).calibrate(
            [confidences[l][rows] for l in range(len(confidences))],
            [np.where(agrees[l][rows], "a", "b") for l in range(len(confidences))],
            np.full(len(rows), "a"))
        remaining = np.ones(confidences.shape[1], dtype=bool)
        accepted = wrong = 0
        for l, threshold in enumerate(cascade.thresholds_):
            decided = remaining & (confidences[l] >= threshold)
            accepted += decided.sum()
            wrong += (decided & ~agrees[l]).sum()
            remaining &= ~decided
        success.append(accepted == 0 or wrong <= alpha * accepted)
        coverage.append(accepted / confidences.shape[1])
    return np.mean(success), np.mean(coverage)


def test_cascade_validity_matches_the_cascade_calibrator():
    rng = np.random.default_rng(3)
    n, reps, alpha, delta = 300, 40, 0.2, 0.1
    confidences = rng.uniform(0.5, 1.0, size=(2, n))
    agrees = rng.random((2, n)) < 0.45 + 0.5 * (confidences - 0.5) * 2  # risk falls with confidence
    grid = fixed_grid(50)
    result = cascade_validity(confidences, agrees, alpha, delta, design="population",
                              calibration_fraction=0.5, n_repetitions=reps, grid=grid, random_state=11)
    calibration = np.random.default_rng(11).integers(0, n, size=(reps, 150))  # the same draws
    success, coverage = _oracle(confidences, agrees, alpha, delta, calibration, grid)
    assert result["success_rate"] == pytest.approx(success)
    assert result["mean_coverage"] == pytest.approx(coverage)
    assert 0 < result["mean_coverage"] < 1
    split = cascade_validity(confidences, agrees, alpha, delta, design="split", calibration_fraction=0.5,
                             n_repetitions=reps, grid=grid, random_state=11,
                             groups=np.arange(n) % 10)
    assert 0 <= split["success_rate"] <= 1 and len(split["stage_share"]) == 2
    with pytest.raises(ValueError, match="design must be one of"):
        cascade_validity(confidences, agrees, alpha, delta, design="bootstrap", calibration_fraction=0.5,
                         n_repetitions=2, grid=grid)


@pytest.mark.slow
def test_reduced_benchmark_through_the_cli(tmp_path, shared_data, monkeypatch, capsys):
    monkeypatch.setenv("MARC_RAY_SHARED_DATA", str(shared_data))
    out = tmp_path / "bench"
    assert main(["benchmark", str(REPO / "configs" / "benchmark_ci.yaml"), "--out", str(out)]) == 0
    for name in ("metrics.csv", "validity.csv", "benchmark.md", "coverage_vs_alpha.png", "manifest.json"):
        assert (out / name).stat().st_size > 0
    metrics = list(csv.DictReader((out / "metrics.csv").open()))
    assert [m["measure"] for m in metrics] == ["predictive", "simulated", "vanilla", "marc"]
    assert all(0 <= float(m["auroc"]) <= 1 for m in metrics)
    assert float(metrics[3]["ranking_risk"]) == pytest.approx(1 - float(metrics[3]["auroc"]), abs=1e-5)
    assert all(m["n_splits"] == "2" and float(m["auroc_sd"]) >= 0 for m in metrics)
    validity = list(csv.DictReader((out / "validity.csv").open()))
    # 4 measures x 2 alphas x 2 designs x (single + cascade)
    assert len(validity) == 32
    population = [r for r in validity if r["design"] == "population"]
    assert all(r["meets_guarantee"] == "True" for r in population), population
    markdown = (out / "benchmark.md").read_text()
    assert "| marc | 0.3 |" in markdown and "mean ± sd over 2 seeded fit / evaluation splits" in markdown


def test_datasets_cli(tmp_path, shared_data, capsys):
    assert main(["datasets", "list"]) == 0
    assert "llmfao" in capsys.readouterr().out
    target = tmp_path / "llmbar.jsonl"
    assert main(["datasets", "export", "llmbar", str(target), "--path", str(shared_data / "llmbar")]) == 0
    assert len(target.read_text().splitlines()) == 885
    verdicts = tmp_path / "verdicts.parquet"
    assert main(["datasets", "export", "pandalm", str(verdicts), "--verdicts",
                 "--path", str(shared_data / "pandalm")]) == 0
    assert read_table(verdicts).num_rows == 1998
    annotations = tmp_path / "pandalm.parquet"
    assert main(["datasets", "replay", "pandalm", str(annotations), "--target", "pandalm-7b",
                 "--path", str(shared_data / "pandalm")]) == 0
    table, layout = validate_annotations(read_table(annotations))
    assert table.num_rows == 999 and layout.n_annotators == 2
    assert main(["datasets", "export", "pandalm", str(tmp_path / "x.csv"),
                 "--path", str(shared_data / "pandalm")]) == 2
    assert "this command writes .jsonl" in capsys.readouterr().err
    assert main(["datasets", "replay", "pandalm", str(annotations), "--target", "gpt-5",
                 "--path", str(shared_data / "pandalm")]) == 2
    assert "unknown judge 'gpt-5'" in capsys.readouterr().err
