"""The report: diagnostics on arrays, numbers that match the certificate, plain words, HTML."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from scipy import stats

from marc_ray.calibrate.bounds import clopper_pearson_upper, min_n_to_pass
from marc_ray.calibrate.diagnostics import calibration_size, drift, monotonicity
from marc_ray.contracts import Certificate, ItemSet
from marc_ray.report import ReportInputs, summarize, write_report

from report_toys import toy_items


# -- diagnostics ---------------------------------------------------------------------------------

def test_monotonicity_counts_drops():
    confidence = np.repeat(np.linspace(0.5, 1.0, 5), 100)
    rates = [0.6, 0.7, 0.95, 0.75, 0.9]  # one big drop (0.95 -> 0.75), otherwise rising
    agree = np.concatenate([np.arange(100) < 100 * r for r in rates])
    result = monotonicity(confidence, agree, n_bins=5)
    assert result["agreement"] == pytest.approx(rates)
    assert result["violations"] == 1 and result["violating_bins"] == [2]
    assert result["significant_violations"] == 1
    rising = monotonicity(confidence, np.concatenate([np.arange(100) < 100 * r for r in sorted(rates)]), 5)
    assert rising["violations"] == 0 and rising["spearman"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"differ in shape"):
        monotonicity(confidence, agree[:10])


def test_monotonicity_never_splits_a_tied_confidence():
    # 70% of the items share one confidence (as 0.91146 did on the demo): equal-count bins by
    # rank used to cut 7 of 10 bins out of that one value and count "drops" between them
    rng = np.random.default_rng(3)
    confidence = np.concatenate([rng.uniform(0.5, 0.9, 300), np.full(700, 0.91146)])
    agree = rng.uniform(size=1000) < 0.8
    result = monotonicity(confidence, agree, n_bins=10)
    means = np.array(result["mean_confidence"])
    assert np.all(np.diff(means) > 0)  # one bin per distinct stretch of values
    assert np.isclose(means, 0.91146).sum() == 1
    assert result["counts"][-1] == 700 and sum(result["counts"]) == 1000
    # bins never overlap: each bin's highest value is below the next bin's lowest
    order = np.sort(confidence)
    bounds = np.cumsum(result["counts"])[:-1]
    assert np.all(order[bounds - 1] < order[bounds])
    # the drops counted are only those where mean confidence rises
    rates = np.diff(result["agreement"])
    assert result["violations"] == int((rates < 0).sum())
    # every value tied: one bin, no drop
    flat = monotonicity(np.full(200, 0.7), agree[:200])
    assert flat["n_bins"] == 1 and flat["violations"] == 0


def test_drift_fires_on_a_shift_only():
    rng = np.random.default_rng(0)
    calibration = rng.uniform(0.5, 1.0, 400)
    same = drift(calibration, rng.uniform(0.5, 1.0, 300), threshold=0.8)
    assert not same["fired"] and same["message"].startswith("No drift detected")
    deployment = np.clip(rng.uniform(0.5, 1.0, 300) - 0.2, 0.5, 1.0)
    shifted = drift(calibration, deployment, threshold=0.8)
    assert shifted["fired"] and shifted["message"].startswith("WARNING")
    assert shifted["coverage_deployment"] < shifted["coverage_calibration"]
    assert shifted["coverage_calibration"] == pytest.approx(np.mean(calibration >= 0.8))
    # the statistic is the largest gap between the two empirical CDFs (0.2 shift: about 0.4),
    # and the p-value scipy's for the same samples
    expected = stats.ks_2samp(calibration, deployment)
    assert shifted["statistic"] == pytest.approx(expected.statistic) and 0.3 < shifted["statistic"] < 0.5
    assert shifted["p_value"] == pytest.approx(expected.pvalue) and shifted["p_value"] < 1e-10
    identical = drift(calibration, calibration.copy())
    assert identical["statistic"] == 0 and identical["p_value"] == pytest.approx(1.0)
    # over 200 same-distribution pairs the warning (p < 0.01) fires at most about 1% of the time
    fired = sum(drift(rng.uniform(size=100), rng.uniform(size=100))["fired"] for _ in range(200))
    assert fired <= 200 * 0.01 + 3 * np.sqrt(200 * 0.01 * 0.99)
    assert drift(calibration, deployment, significance=1e-300)["fired"] is False
    with pytest.raises(ValueError, match=r"finite confidences in both samples"):
        drift(calibration, np.array([np.nan]))


@pytest.mark.parametrize("risk", [0.0, 0.02, 0.05, 0.08])
def test_calibration_size_is_the_smallest_passing_n(risk):
    n = int(calibration_size(100, alpha=0.1, delta=0.1, observed_risk=risk)["n_needed_at_observed_risk"])
    assert n > 1
    assert clopper_pearson_upper(round(risk * n), n, 0.1) <= 0.1            # the bound passes at n
    assert clopper_pearson_upper(round(risk * (n - 1)), n - 1, 0.1) > 0.1    # and fails one below


def test_calibration_size_against_the_bound():
    size = calibration_size(100, alpha=0.1, delta=0.1, observed_risk=0.05)
    assert size["n_min_zero_errors"] == min_n_to_pass(0.1, 0.1) == 22
    n = int(size["n_needed_at_observed_risk"])
    assert size["adequate"] == (100 >= n)
    hopeless = calibration_size(1000, 0.1, 0.1, observed_risk=0.2)
    assert math.isinf(hopeless["n_needed_at_observed_risk"]) and not hopeless["adequate"]
    with pytest.raises(ValueError, match=r"must lie in \(0, 1\)"):
        calibration_size(10, 1.5, 0.1)


# -- numbers against the certificate -------------------------------------------------------------

def test_summary_recomputes_the_certificate(single):
    certificate, (confidence, pred, human) = single
    deployment = toy_items(300, seed=5)
    summary = summarize(ReportInputs(certificate, ItemSet("calibration", confidence, pred, human),
                                     ItemSet("test", *deployment)))
    stage = certificate.stages[0]
    recomputed = summary["calibration"]["stages"][0]
    assert (recomputed["n"], recomputed["k"]) == (stage["n"], stage["k"])
    assert all(check["match"] for check in summary["consistency"]) and len(summary["consistency"]) == 2
    assert summary["calibration"]["coverage"] == pytest.approx(certificate.coverage)
    expected = float(np.mean(deployment[0] >= stage["threshold"]))
    assert summary["deployment"]["coverage"] == pytest.approx(expected)
    headline = summary["guarantee"]["headline"]
    assert "agrees with the human annotators at least 85% of the time, with 90% confidence" in headline
    decided = f"{100 * certificate.coverage:.1f}".rstrip("0").rstrip(".") + "%"
    n_decided = int(round(certificate.coverage * len(confidence)))
    assert f"it decided {n_decided} of the {len(confidence)} calibration items ({decided})" in headline
    # the threshold scan reproduces the certificate's bound at lambda-hat
    scan = summary["diagnostics"]["stages"][0]["scan"]
    index = scan["grid"].index(stage["threshold"])
    assert scan["bound"][index] == pytest.approx(stage["upper_bound"])


def test_abstention_is_said_plainly(abstaining):
    certificate, (confidence, pred, human) = abstaining
    summary = summarize(ReportInputs(certificate, ItemSet("calibration", confidence, pred, human)))
    assert summary["guarantee"]["abstained"]
    assert summary["guarantee"]["headline"].startswith("No threshold passed")
    assert "every item is escalated to humans" in summary["guarantee"]["headline"]
    assert summary["calibration"]["coverage"] == 0 and summary["calibration"]["shares"]["escalated"] == 1


def test_cascade_routing_adds_up(cascade):
    certificate, stages, human = cascade
    confidence = np.stack([s[1] for s in stages], axis=1)
    pred = np.stack([s[2] for s in stages], axis=1)
    summary = summarize(ReportInputs(certificate, ItemSet("calibration", confidence, pred, human)))
    shares = summary["calibration"]["shares"]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert all(check["match"] for check in summary["consistency"])
    route_counts = certificate.extra["route_counts"]
    assert [round(shares[n] * len(human)) for n in ("small", "large", "escalated")] == route_counts
    assert "deciding judge of the cascade" in summary["guarantee"]["headline"]


# -- the written report ---------------------------------------------------------------------------

def test_written_report_is_self_contained(single, tmp_path):
    certificate, (confidence, pred, human) = single
    manifest = {"command": "marc-ray run configs/demo.yaml", "hashes": {"data": "sha256:abc"},
                "versions": {"ray": "2.60.0"}, "seeds": {"seed": 0},
                "config_text": "annotate:\n  model: smollm2\n",
                "config": {"engine_options": {"api_key": "sk-SECRET123"}}}
    measures = {"conf_marc": {"auroc": 0.8, "ranking_risk": 0.2},
                "conf_simulated": {"auroc": 0.7, "ranking_risk": 0.3}}
    paths = write_report(ReportInputs(certificate, ItemSet("calibration", confidence, pred, human),
                                      ItemSet("test", *toy_items(300, seed=5, shift=-0.2)),
                                      measures=measures, manifest=manifest,
                                      notes=["The bundled judge is tiny."]), tmp_path)
    page = open(paths["html"], encoding="utf-8").read()
    assert "sk-SECRET123" not in page and "sk-SECRET123" not in open(paths["json"]).read()
    assert not re.search(r"""(src|href)=['"]https?://""", page)  # no external resources
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 6  # risk-coverage, scan, reliability, histograms, routing, measures
    assert all(len(image) > 5000 for image in images)
    for needle in ("at least 85% of the time, with 90% confidence", "The bundled judge is tiny.",
                   "Consistency check", "WARNING: the deployment confidences differ",
                   "marc-ray run configs/demo.yaml", "Assumptions", "lambda-hat"):
        assert needle in page, needle
    written = Certificate.read(paths["certificate"])
    assert written.to_dict() == certificate.to_dict()
    report = json.loads(open(paths["json"]).read())
    assert report["certificate"]["stages"][0]["n"] == certificate.stages[0]["n"]
    assert report["diagnostics"]["stages"][0]["drift"]["fired"] is True
    markdown = open(paths["markdown"]).read()
    assert "![" in markdown and (tmp_path / "figures" / "routing.png").stat().st_size > 5000


def test_report_cli_needs_a_run_folder(tmp_path, capsys):
    from marc_ray.cli import main

    assert main(["report", str(tmp_path)]) == 2
    assert "not a marc_ray run folder (no config.yaml)" in capsys.readouterr().err
