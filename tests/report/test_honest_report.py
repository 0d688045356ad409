"""The report says what each number counts, and nothing it shows misleads (issue 20, item 6)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from marc_ray.contracts import ItemSet
from marc_ray.report import ReportInputs, summarize, write_report

from report_toys import toy_items


def test_counts_say_what_they_count(single, tmp_path):
    certificate, (confidence, pred, human) = single
    n_ties = int((human == "tie").sum())
    assert n_ties > 0
    paths = write_report(ReportInputs(certificate, ItemSet("calibration", confidence, pred, human)),
                         tmp_path)
    page = open(paths["html"], encoding="utf-8").read()
    markdown = open(paths["markdown"], encoding="utf-8").read()
    header = (f"{len(confidence)} calibration items, {n_ties} ties dropped (policy drop), "
              f"{len(confidence) - n_ties} used")
    assert header in page and header in markdown
    # the size diagnostic names the same count of items used, not a bare "calibration set"
    assert f"The bound counts {len(confidence) - n_ties} calibration items" in page
    assert "The calibration set has" not in page
    # every "k of n ... (p%)" printed agrees: p = k / n
    for text in (page, markdown):
        shares = re.findall(r"(\d+) of (?:the )?(\d+) [^()]*?\(([\d.]+)%\)", text)
        assert shares
        for count, total, shown in shares:
            assert float(shown) == pytest.approx(100 * int(count) / int(total), abs=0.05)


def test_runs_the_data_never_had_are_not_run(single, tmp_path):
    import pyarrow as pa

    from marc_ray.calibrate.evaluation import escalation_examples

    certificate, (confidence, pred, human) = single
    ids = np.array([f"item-{i}" for i in range(len(confidence))], dtype=object)
    items = ItemSet("calibration", confidence, pred, human, ids=ids)
    # one recorded order (ab) per item: the ba runs were never made
    runs = pa.table({"id": ids.tolist(),
                     "probs": [[1.0, None, 0.0, None]] * len(ids),
                     "status": [["ok", "missing: not run", "ok", "missing: not run"]] * len(ids)})
    escalations = escalation_examples(certificate, items, runs)
    example = escalations["examples"]["below_threshold"][0]
    assert example["runs"]["unreadable"] == 0 and example["runs"]["not_run"] == 2
    paths = write_report(ReportInputs(certificate, items, escalations=escalations), tmp_path)
    markdown = open(paths["markdown"], encoding="utf-8").read()
    assert "2 runs: 1 favour a, 1 favour b, 0 even, 0 unreadable; 2 not run (absent from the data)" in markdown
    assert "2 unreadable" not in markdown


def test_cascade_escalations_describe_the_stage_they_quote(cascade, tmp_path):
    from marc_ray.calibrate.evaluation import escalation_examples

    certificate, stages, human = cascade
    confidence = np.stack([s[1] for s in stages], axis=1)
    pred = np.stack([s[2] for s in stages], axis=1)
    ids = np.array([f"item-{i}" for i in range(len(human))], dtype=object)
    items = ItemSet("calibration", confidence, pred, human, ids=ids)
    escalations = escalation_examples(certificate, items)
    examples = [e for kind in escalations["examples"].values() for e in kind]
    assert examples
    for example in examples:
        position = int(example["id"].split("-")[1])
        assert example["stage"] == "large" and "last stage 2 (large)" in example["reason"]
        # the confidence shown is the quoted stage's, not the first judge's
        assert example["confidence"] == pytest.approx(confidence[position, 1])
    paths = write_report(ReportInputs(certificate, items, escalations=escalations), tmp_path)
    markdown = open(paths["markdown"], encoding="utf-8").read()
    assert "| stage quoted | confidence (that stage) |" in markdown


def test_the_configuration_shows_only_what_the_engine_used():
    from marc_ray.report.collect import shown_config

    resolved = {"seed": 0,
                "annotate": {"engine": "replay", "model": "smollm2", "mode": "likelihood",
                             "n_annotators": 5, "k_shots": 5, "beta": 5.0, "judge_name": "gpt",
                             "engine_options": {"runs": "runs.parquet", "target": "gpt"}},
                "calibrate": {"alpha": 0.1}}
    shown = shown_config(resolved)
    assert shown["annotate"] == {"engine": "replay", "judge_name": "gpt",
                                 "engine_options": {"runs": "runs.parquet", "target": "gpt"}}
    assert shown["calibrate"] == {"alpha": 0.1} and resolved["annotate"]["model"] == "smollm2"
    # a model judge keeps its model and layout, less what the other mode alone reads
    model = shown_config({"annotate": {"engine": "transformers", "model": "smollm2",
                                       "mode": "likelihood", "labels": ["A", "B"], "beta": 5.0}})
    assert model["annotate"] == {"engine": "transformers", "model": "smollm2", "mode": "likelihood",
                                 "beta": 5.0}
    # a cascade: the replay entry is trimmed, the shared section serves the model judge
    cascade = shown_config({"annotate": {"engine": "transformers", "model": "smollm2", "k_shots": 2},
                            "cascade": [{}, {"engine": "replay", "judge_name": "gpt", "k_shots": 5,
                                             "engine_options": {"runs": "r.parquet"}}]})
    assert cascade["annotate"]["model"] == "smollm2"
    assert cascade["cascade"][1] == {"engine": "replay", "judge_name": "gpt",
                                     "engine_options": {"runs": "r.parquet"}}


def test_a_replay_runs_manifest_shows_no_model(single, tmp_path):
    import yaml

    from marc_ray.report.collect import run_manifest

    certificate, _ = single
    resolved = {"run_dir": str(tmp_path), "seed": 0,
                "annotate": {"engine": "replay", "model": "smollm2", "mode": "likelihood",
                             "n_annotators": 5, "k_shots": 5, "judge_name": "gpt",
                             "engine_options": {"runs": "runs.parquet"}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(resolved))
    manifest = run_manifest(str(tmp_path), certificate, None)
    for key in ("smollm2", "mode:", "n_annotators", "k_shots"):
        assert key not in manifest["config_text"], key
    assert "engine: replay" in manifest["config_text"] and "runs.parquet" in manifest["config_text"]
    assert "model" not in manifest["config"]["annotate"]


def _overlaps(figure) -> list[str]:
    """Texts drawn in an axes (notes, values) that a legend's box covers."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    found = []
    for axis in figure.axes:
        legends = [a.get_legend() for a in figure.axes if a.get_legend() is not None]
        texts = list(axis.texts) + [c for c in axis.get_children()
                                    if type(c).__name__ == "Annotation"]
        for text in texts:
            box = text.get_window_extent(renderer)
            for legend in legends:
                if legend.get_window_extent(renderer).overlaps(box):
                    found.append(text.get_text())
    return found


def test_no_legend_covers_an_annotation(tmp_path):
    from marc_ray.report import plots

    rng = np.random.default_rng(0)
    samples = {"calibration": rng.uniform(0.5, 1.0, 300), "test": rng.uniform(0.5, 1.0, 100)}
    abstained = plots.plot_confidence_histograms(samples, float("inf"), "conf_marc")
    assert "no threshold passed: every item is escalated" in [
        t.get_text() for t in abstained.axes[0].get_children() if hasattr(t, "get_text")]
    assert _overlaps(abstained) == []
    measures = plots.plot_measures({"conf_predictive": {"auroc": 0.821},
                                    "conf_simulated": {"auroc": 0.857}, "conf_marc": {"auroc": 0.99}})
    assert _overlaps(measures) == []
    (tmp_path / "hist.png").write_bytes(__import__("base64").b64decode(plots.to_png_base64(abstained)))


def test_the_report_labels_a_vacuous_bound(single, tmp_path):
    from marc_ray.fit.bound import bound_reading

    certificate, (confidence, pred, human) = single
    bound = {"bound": 585.0, "empirical_margin_risk": 0.05, "complexity": 3.4e6, "gamma": 0.1,
             "delta_prime": 0.05, "n_pairs": 20000}
    fit = {"toy-judge": {"gamma_history": [0.1, 0.1], "gamma": 0.1, "best_epoch": 1,
                         "agreement_map": False, "bound": bound_reading(bound)}}
    paths = write_report(ReportInputs(certificate, ItemSet("calibration", confidence, pred, human),
                                      fit=fit), tmp_path)
    markdown = open(paths["markdown"], encoding="utf-8").read()
    assert "bound 585 (above 1: vacuous, it says nothing about the ranking risk; it would fall below 0.5" in markdown


def _choice(**more):
    scores = {name: {"predicted_coverage": coverage, "predicted_threshold": 0.9, "grid_auroc": 0.7,
                     "validation_auroc": 0.7}
              for name, coverage in (("conf_simulated", 0.989), ("conf_marc", 0.4))}
    return {"choice": "conf_simulated", "criterion": "predicted_certified_coverage", "alpha": 0.15,
            "delta": 0.1, "n_validation": 87, "n_calibration": 419, "scores": scores,
            "ranking": ["conf_simulated", "conf_marc"], **more}


@pytest.mark.parametrize("record, expected, absent", [
    (_choice(), "with no interval recorded", "TOO SMALL"),
    (_choice(predicted_coverage_interval=[0.0, 1.0], interval_method="percentile bootstrap",
             too_small_to_predict=True, note="on 87 validation items the interval reaches 0"),
     "interval [0%, 100%] (percentile bootstrap). TOO SMALL TO PREDICT: on 87 validation items "
     "the interval reaches 0.", "no interval"),
    (_choice(predicted_coverage_interval=[0.95, 1.0], interval_method="percentile bootstrap",
             too_small_to_predict=False, note=None), "interval [95%, 100%]", "TOO SMALL"),
])
def test_auto_shows_its_prediction_with_an_interval(single, tmp_path, record, expected, absent):
    import dataclasses

    certificate, (confidence, pred, human) = single
    certificate = dataclasses.replace(certificate, extra={**certificate.extra,
                                                          "confidence_choice": record})
    paths = write_report(ReportInputs(certificate, ItemSet("calibration", confidence, pred, human)),
                         tmp_path)
    markdown = open(paths["markdown"], encoding="utf-8").read()
    assert "Predicted certified coverage of conf_simulated: 98.9%" in markdown
    assert expected in markdown and absent not in markdown


def test_a_certified_measure_that_ranks_below_another_is_said(single, tmp_path):
    certificate, (confidence, pred, human) = single  # certifies conf_marc
    measures = {"conf_predictive": {"auroc": 0.821}, "conf_simulated": {"auroc": 0.857},
                "conf_marc": {"auroc": 0.693}}
    paths = write_report(ReportInputs(certificate, ItemSet("calibration", confidence, pred, human),
                                      measures=measures), tmp_path)
    markdown = open(paths["markdown"], encoding="utf-8").read()
    sentence = ("The certified measure conf_marc ranks 3 of 3 by AUROC on the held-out items (0.693, "
                "below conf_simulated 0.857, conf_predictive 0.821).")
    assert "**Warning.** " + sentence in markdown
    assert markdown.index(sentence) < markdown.index("## The guarantee")  # at the top as well
    # ranking first: no warning
    measures["conf_marc"]["auroc"] = 0.9
    quiet = summarize(ReportInputs(certificate, ItemSet("calibration", confidence, pred, human),
                                   measures=measures))
    assert quiet["advice"]["ranks_below"] == [] and not any("ranks" in n for n in quiet["notes"])


def test_measure_advice_names_what_auto_would_choose(single, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from marc_ray.calibrate.evaluation import measure_advice
    from marc_ray.calibrate.select import choose_confidence_table

    certificate, _ = single
    rng = np.random.default_rng(7)
    n = 900
    good = rng.uniform(0.5, 1.0, n)
    agree = rng.random(n) < good
    noise = rng.uniform(0.5, 1.0, n)  # conf_marc here: unrelated to agreement
    human = np.where(rng.random(n) < 0.5, "a", "b")
    pred = np.where(agree, human, np.where(human == "a", "b", "a"))
    split = np.array(["train", "calibration", "test"])[np.arange(n) % 3]
    table = pa.table({"id": [f"i{i}" for i in range(n)], "split": split, "pred": pred,
                      "human_label": human, "conf_simulated": good, "conf_marc": noise})
    pq.write_table(table, tmp_path / "scores.parquet")
    measures = {"conf_simulated": {"auroc": 0.8}, "conf_marc": {"auroc": 0.5}}
    advice = measure_advice(certificate, measures, str(tmp_path / "scores.parquet"))
    assert advice["ranks_below"] == ["conf_simulated"]
    assert advice["auto_choice"] == "conf_simulated"
    assert advice["auto_source"].startswith("300 items of the training split")
    # the same choice the pipeline's auto makes on the same rows
    expected = choose_confidence_table(table, certificate.alpha, certificate.delta, 300,
                                       candidates=["conf_simulated", "conf_marc"],
                                       tie_policy="drop", grid=np.linspace(0.5, 1, 100))
    assert expected["choice"] == advice["auto_choice"]


# -- JSON: infinity and missing numbers are null plus a status, never a string -------------------

def _strings_like_numbers(value, path="$") -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _strings_like_numbers(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _strings_like_numbers(v, f"{path}[{i}]")]
    return [path] if isinstance(value, str) and value.lower() in ("inf", "-inf", "+inf", "nan") else []


def _strict(text: str):
    import json

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


def test_json_safe_encodes_infinity_and_missing_as_null_with_a_status():
    from marc_ray.contracts.io import json_restore, json_safe

    value = {"threshold": math.inf, "upper_bound": math.nan, "low": -math.inf, "n": np.int64(3),
             "risks": [0.1, math.nan, math.inf], "nested": {"certified_threshold": np.float64("inf")}}
    encoded = json_safe(value)
    assert encoded == {"threshold": None, "threshold_status": "none passed", "upper_bound": None,
                       "upper_bound_status": "missing", "low": None,
                       "low_status": "negative infinite", "n": 3, "risks": [0.1, None, None],
                       "nested": {"certified_threshold": None,
                                  "certified_threshold_status": "none passed"}}
    restored = json_restore(encoded)
    assert restored["threshold"] == math.inf and math.isnan(restored["upper_bound"])
    assert restored["low"] == -math.inf and "threshold_status" not in restored
    assert restored["nested"] == {"certified_threshold": math.inf}
    assert json_safe(restored) == encoded  # a round trip changes nothing (the digest holds)


def test_written_json_has_no_number_strings(abstaining, tmp_path):
    from marc_ray.contracts import Certificate

    certificate, (confidence, pred, human) = abstaining
    paths = write_report(ReportInputs(certificate, ItemSet("calibration", confidence, pred, human),
                                      ItemSet("test", *toy_items(100, seed=9))), tmp_path)
    for kind in ("json", "certificate"):
        data = _strict(open(paths[kind], encoding="utf-8").read())
        assert _strings_like_numbers(data) == [], kind
    stage = _strict(open(paths["certificate"]).read())["stages"][0]
    assert stage["threshold"] is None and stage["threshold_status"] == "none passed"
    report = _strict(open(paths["json"]).read())
    assert report["certificate"]["stages"][0]["threshold_status"] == "none passed"
    # the new file is read back, digest verified, threshold +inf again
    again = Certificate.read(paths["certificate"])
    assert again.thresholds == [math.inf] and again.to_dict() == certificate.to_dict()


def test_a_certificate_written_before_the_null_encoding_is_still_read(tmp_path):
    """Written by the code before this change (threshold "inf"): read, verified, routed."""
    import pathlib

    from marc_ray.contracts import Certificate

    old = pathlib.Path(__file__).parent / "data" / "certificate_before_null_encoding.json"
    assert '"threshold": "inf"' in old.read_text()
    certificate = Certificate.read(old)
    assert certificate.thresholds == [math.inf]
    certificate.write(tmp_path / "rewritten.json")  # re-encoded, with a new digest
    rewritten = Certificate.read(tmp_path / "rewritten.json")
    assert rewritten.thresholds == [math.inf]
    assert _strings_like_numbers(_strict((tmp_path / "rewritten.json").read_text())) == []


def test_apply_does_not_count_runs_never_made_as_unreadable(single, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from marc_ray.apply import apply_file

    certificate, _ = single
    certificate.write(tmp_path / "certificate.json")
    nan = float("nan")
    # one recorded order: the 10 runs of the other were never made; 3 made runs are unreadable
    probs = [[0.7] * 7 + [nan] * 3 + [nan] * 10]
    status = [["ok"] * 7 + ["missing: unusable verdict"] * 3 + ["missing: not run"] * 10]
    pq.write_table(pa.table({"id": ["x"], "pred": pa.array([None], pa.string()),
                             "conf_marc": [nan], "probs": pa.array(probs, pa.list_(pa.float32())),
                             "status": status}), tmp_path / "new.parquet")
    apply_file(tmp_path / "certificate.json", tmp_path / "new.parquet", tmp_path / "out")
    row = pq.read_table(tmp_path / "out" / "decisions.parquet").to_pylist()[0]
    assert row["reason"] == "no usable verdict: 3 of 10 runs unreadable"
