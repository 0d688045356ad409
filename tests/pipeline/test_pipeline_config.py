"""PipelineConfig: strict loading, one error per bad value, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from marc_ray.cli import main
from marc_ray.config import PipelineConfig

REPO = Path(__file__).resolve().parents[2]
GOOD = {"run_dir": "runs/t", "data": {"demo": {"n_items": 20}},
        "annotate": {"model": "smollm2", "n_annotators": 2, "k_shots": 1},
        "calibrate": {"alpha": 0.15, "delta": 0.1}}


def config(**changes) -> PipelineConfig:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = data
        for parent in parents:
            target = target.setdefault(parent, {})
        target[key] = value
    return PipelineConfig.from_dict(data, source="test.yaml")


@pytest.mark.parametrize("name", ["demo.yaml", "ci_demo.yaml", "example_gpu.yaml"])
def test_shipped_configs_load(name):
    loaded = PipelineConfig.from_yaml(REPO / "configs" / name)
    assert loaded.calibrate.alpha > 0 and loaded.judges()


def test_defaults_and_round_trip():
    loaded = config()
    assert loaded.calibrate.confidence == "conf_marc"
    assert loaded.fit.model.random_state == loaded.seed == loaded.annotate.seed
    judge = loaded.judges()[0]
    assert judge.input.endswith("data/comparisons.parquet") and judge.output.endswith(
        "annotate/SmolLM2-135M-Instruct")
    again = PipelineConfig.from_dict(yaml.safe_load(loaded.to_yaml()))
    assert again.to_dict() == loaded.to_dict()


def test_sections_are_typed_once():
    from marc_ray.annotate.config import AnnotateConfig
    from marc_ray.fit.config import FitConfig, FitSection, TuneOptions

    loaded = config(fit__tune_options={"num_samples": 3}, fit__epochs=4, annotate__k_shots=2)
    assert isinstance(loaded.annotate, AnnotateConfig) and loaded.annotate.k_shots == 2
    assert isinstance(loaded.fit, FitSection) and isinstance(loaded.fit.model, FitConfig)
    assert loaded.fit.model.epochs == 4 and loaded.fit.tune_options == TuneOptions(num_samples=3)
    assert loaded.fit.measure == "conf_marc"
    # the YAML shape stays flat: `fit: {epochs: 4, tune_options: {...}}`, and reads back the same
    assert loaded.to_dict()["fit"]["epochs"] == 4 and "model" not in loaded.to_dict()["fit"]


@pytest.mark.parametrize("changes, match", [
    ({"colour": 1}, r"unknown key 'colour'; allowed keys: \['annotate', 'calibrate'"),
    ({"calibrate__alpah": 0.1}, r"unknown key 'calibrate.alpah'.*'alpha'"),
    ({"data__demo__n_itemz": 3}, r"unknown key 'data.demo.n_itemz'.*'n_items'"),
    ({"fit__epoch": 3}, r"unknown key 'fit.epoch'.*'epochs'"),
    ({"annotate__shots": 3}, r"unknown key 'annotate.shots'; allowed keys in annotate: \['batch_size'"),
    ({"annotate__model": "no/such/model"}, r"annotate.model: unknown model 'no/such/model'"),
    ({"calibrate__alpha": 0}, r"calibrate.alpha must be a number in \(0, 1\).*got 0"),
    ({"calibrate__alpha": 1.5}, r"calibrate.alpha must be a number in \(0, 1\).*got 1.5"),
    ({"calibrate__delta": -0.1}, r"calibrate.delta must be a number in \(0, 1\)"),
    ({"calibrate__delta": "low"}, r"test.yaml: calibrate.delta must be a number, got 'low'"),
    ({"calibrate__alpha": True}, r"calibrate.alpha must be a number, got True"),
    ({"calibrate__n_grid": 20.5}, r"calibrate.n_grid must be an integer, got 20.5"),
    ({"data__train_fraction": "0.4"}, r"data.train_fraction must be a number, got '0.4'"),
    ({"report__title": 3}, r"report.title must be a string, got 3"),
    ({"fit__tune": "yes"}, r"fit.tune must be true or false, got 'yes'"),
    ({"fit__tune_options": {"num_sample": 2}}, r"unknown key 'fit.tune_options.num_sample'"),
    ({"fit__tune_options": {"num_samples": "x"}}, r"fit.tune_options.num_samples must be an integer"),
    ({"fit__tune_options": {"select": "best"}}, r"fit.tune_options.select must be one of"),
    ({"fit__tune_options": {"search_space": {"lr": {"grid_search": [1]}}}},
     r"search_space names unknown FitConfig fields \['lr'\]"),
    ({"ray__num_cpus": 0}, r"ray.num_cpus must be an integer >= 1"),
    ({"annotate__engine": "replay", "annotate__engine_options": {"runs": "/no/such/runs.parquet"}},
     r"annotate.engine_options.runs: no such file '/no/such/runs.parquet'"),
    ({"cascade": [{"shots": 2}]}, r"unknown key 'cascade\[0\].shots'"),
    ({"annotate__engine_options": {"max_len": 9}}, r"engine_options must be keys of the transformers"),
    ({"fit__learning_rate": "fast"}, r"fit: learning_rate must be a finite number > 0, got 'fast'"),
    ({"calibrate__procedure": "magic"}, r"calibrate.procedure must be one of \['bonferroni'"),
    ({"calibrate__confidence": "conf_x"}, r"calibrate.confidence must be one of"),
    ({"calibrate__grid_low": 0.9, "calibrate__grid_high": 0.5}, r"grid_low < calibrate.grid_high"),
    ({"fit__enabled": False}, r"uses \['conf_marc'\] but fit.enabled is false"),
    ({"fit__variant": "vanilla"}, r"fit.variant 'vanilla' writes 'conf_vanilla'"),
    ({"fit__epochs": 0}, r"fit: epochs must be an integer >= 1"),
    ({"annotate__input": "x.jsonl"}, r"annotate.input is set by the pipeline"),
    ({"annotate__engine": "magic"}, r"annotate: annotate config: engine must be one of"),
    ({"data__train_fraction": 0.9}, r"sum to 1"),
    ({"calibrate__delta_split": [1, 2]}, r"delta_split must be 'equal' or a list of 1 positive weights"),
    ({"cascade": [{"judge_name": "x"}, {"judge_name": "x"}]}, r"two judges are named 'x'"),
])
def test_bad_values_are_named(changes, match):
    with pytest.raises(ValueError, match=match):
        config(**changes)


def test_data_files_are_checked(tmp_path):
    data = dict(GOOD, data={"comparisons": str(tmp_path / "missing.jsonl"), "pool": str(tmp_path)})
    with pytest.raises(ValueError, match=r"data.comparisons: no such file .*missing.jsonl"):
        PipelineConfig.from_dict(data)
    with pytest.raises(ValueError, match=r"data.comparisons is required"):
        PipelineConfig.from_dict(dict(GOOD, data={}))
    with pytest.raises(ValueError, match=r"either data.demo or data.comparisons"):
        PipelineConfig.from_dict(dict(GOOD, data={"demo": {}, "comparisons": "x"}))


def test_yaml_errors(tmp_path):
    with pytest.raises(ValueError, match=r"no such config file"):
        PipelineConfig.from_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ValueError, match=r"must be a mapping of sections"):
        PipelineConfig.from_yaml(bad)


def test_cli_reports_a_bad_config_before_starting(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(dict(GOOD, calibrate={"alpha": 2.0}, run_dir=str(tmp_path / "run"))))
    assert main(["run", str(bad)]) == 2
    assert "calibrate.alpha must be a number in (0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing started, nothing written


def test_cascade_builds_one_judge_config_each():
    loaded = config(cascade=[{"judge_name": "small"}, {"judge_name": "large", "beta": 3.0}],
                    calibrate__delta_split=[1, 3])
    judges = loaded.judges()
    assert [j.judge_name for j in judges] == ["small", "large"]
    assert judges[1].beta == 3.0 and judges[0].beta == 5.0
    assert judges[0].output != judges[1].output


def test_tune_options_are_tune_margins_keywords():
    import inspect

    from dataclasses import fields

    from marc_ray.config import TuneOptions
    from marc_ray.fit.tune import tune_margin

    parameters = inspect.signature(tune_margin).parameters
    keywords = [name for name, p in parameters.items()
                if p.kind is p.KEYWORD_ONLY and name != "refit"]
    assert sorted(f.name for f in fields(TuneOptions)) == sorted(keywords)
    # and the same defaults: the YAML section and the Python call mean the same sweep
    assert all(getattr(TuneOptions(), name) == parameters[name].default for name in keywords)


def test_alpha_default_is_the_calibrators():
    from marc_ray.calibrate import SelectiveCalibrator
    from marc_ray.config import CalibrateConfig

    assert CalibrateConfig().alpha == SelectiveCalibrator().alpha == 0.1


def test_every_seed_derives_from_the_run_seed_unless_set():
    """docs/pipeline.md, "Seeds": a section's seed is the top-level seed unless it sets its own."""
    derived = config(seed=7)
    assert (derived.data.split_seed, derived.annotate.seed, derived.fit.model.random_state) == (7, 7, 7)
    assert all(judge.seed == 7 for judge in derived.judges())
    own = config(seed=7, data__split_seed=1, annotate__seed=2, fit__random_state=3)
    assert (own.data.split_seed, own.annotate.seed, own.fit.model.random_state) == (1, 2, 3)
    # the written configuration records every seed: reading it back gives the same ones
    again = PipelineConfig.from_dict(yaml.safe_load(own.replace(seed=9).to_yaml()))
    assert (again.seed, again.data.split_seed, again.annotate.seed) == (9, 1, 2)
    assert config().data.split_seed == 0  # seed 0 (the default): every seed 0, as before
