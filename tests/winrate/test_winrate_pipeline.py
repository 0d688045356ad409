"""The whole pipeline (replay judge on the demo data, MARC fitted locally) writes the win-rate
section into its report, and ``marc-ray winrate`` reads the run: the demo's named models, their
known order, and no row that trained the confidence model among the labels."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
from grouped_scenario import run_scenario, write_scenario  # noqa: E402

from marc_ray.cli import main  # noqa: E402
from marc_ray.demo import DemoSpec  # noqa: E402
from marc_ray.run_folder import RunFolder  # noqa: E402
from marc_ray.winrate.items import read_run  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("winrate_pipeline")
    _, config, _ = run_scenario(folder, write_scenario(folder))
    return config.run_dir


def test_the_report_holds_the_win_rates(run):
    report = Path(RunFolder(run).report_dir)
    assert (report / "report.html").exists()
    record = json.loads((report / "winrate.json").read_text())
    assert (report / "figures" / "winrate_leaderboard.png").exists()
    ranked = [m["model"] for m in record["leaderboard"]["models"]]
    assert ranked[0] == "model-strong" and ranked[-1] == "model-weak"  # DemoSpec.models' order
    assert [m for m, _ in DemoSpec().models] == ["model-strong", "model-mid", "model-weak"]


def test_winrate_cli_on_the_run_excludes_the_fitted_rows(run, tmp_path):
    assert main(["winrate", run, "--out", str(tmp_path)]) == 0
    items = read_run(run)
    config = json.loads(Path(RunFolder(run).path("fit", "replayed", "config.json")).read_text())
    assert config["valid_ids"] and not items.eligible[np.isin(items.ids, config["valid_ids"])].any()
    record = json.loads((tmp_path / "winrate.json").read_text())
    assert record["n_training_excluded"] > 0
    assert sum(p["n_labelled"] for p in record["pairs"]) == int(
        (items.eligible & np.isin(items.human_label, ["a", "b"])).sum())
