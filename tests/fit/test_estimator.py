import math
import os

import numpy as np
import pytest

from marc_ray.contracts import ContractError
from marc_ray.fit import FitConfig, MarcConfidence, fit_confidence_model
from marc_ray.fit.baselines import confidence_measures, evaluate_measures
from marc_ray.fit.estimator import NotFittedError
from marc_ray.fit.synthetic import all_subsets_layout, trap_annotations

FAST = dict(epochs=12, n_pairs=2000, pairs_per_step=250)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_marc_ranks_better_than_the_heuristic_when_it_is_not_monotone(seed, small_layout):
    table = trap_annotations(600, layout=small_layout, seed=seed)
    models = [MarcConfidence(FitConfig(variant=v, random_state=seed, **FAST)).fit(table)
              for v in ("marc", "vanilla")]
    rows = {r["measure"]: r for r in evaluate_measures(table, confidence_measures(table, models))}
    # the generator makes the heuristic *worse than chance*: traps get its highest confidence
    assert rows["simulated"]["ranking_risk"] > 0.55
    assert rows["marc"]["ranking_risk"] < rows["simulated"]["ranking_risk"] - 0.3
    assert rows["marc"]["ranking_risk"] < 0.25
    assert rows["vanilla"]["ranking_risk"] < 0.3


def test_fit_sets_bound_terms_and_history(trap_table):
    model = fit_confidence_model(trap_table, FitConfig(**FAST))
    assert len(model.history_) == FAST["epochs"]
    assert all(math.isfinite(v) for v in model.bound_.values())
    assert model.bound_["bound"] == pytest.approx(model.bound_["empirical_margin_risk"] + model.bound_["slack"])
    assert 0.01 <= model.gamma_ <= 1.0 and model.bound_["n_pairs"] == FAST["n_pairs"]
    vanilla = fit_confidence_model(trap_table, FitConfig(variant="vanilla", margin_init=0.2, **FAST))
    assert vanilla.gamma_ == 0.2 and vanilla.column == "conf_vanilla"


def test_save_load_roundtrip_gives_identical_scores_without_pickle(trap_table, tmp_path):
    model = fit_confidence_model(trap_table, FitConfig(epochs=3, n_pairs=500))
    model.save(tmp_path / "m")
    assert sorted(os.listdir(tmp_path / "m")) == ["config.json", "model.safetensors"]
    loaded = MarcConfidence.load(tmp_path / "m")
    assert np.array_equal(model.score(trap_table), loaded.score(trap_table))
    assert loaded.config == model.config and loaded.gamma_ == model.gamma_
    assert loaded.feature_layout_ == model.feature_layout_


def test_resumed_local_run_equals_an_uninterrupted_one(trap_table, tmp_path):
    from marc_ray.fit.data import prepare
    from marc_ray.fit.train import fit_local

    config = FitConfig(epochs=4, n_pairs=500)
    data = prepare(trap_table, config)
    straight, _ = fit_local(config, data.train, data.valid)
    fit_local(config.replace(epochs=2), data.train, data.valid, checkpoint_dir=str(tmp_path / "ck"))
    resumed, state = fit_local(config, data.train, data.valid, checkpoint_dir=str(tmp_path / "ck"),
                               resume=True)
    assert [h["epoch"] for h in state["history"]] == [0, 1, 2, 3]
    assert state["history"][-1]["resumed_from"] == 1
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy())


def test_too_few_disagreements_to_form_pairs(small_layout):
    table = trap_annotations(40, layout=small_layout, seed=0, trap_share=0.0)
    rows = table.to_pylist()
    for row in rows:                       # every human agrees with the judge but one
        row["human_label"] = row["pred"]
    rows[0]["human_label"] = "b" if rows[0]["pred"] == "a" else "a"
    rows[0]["split"] = "train"
    from marc_ray.annotate.assemble import annotation_table

    with pytest.raises(ContractError, match=r"too few cases to form \(agree, disagree\) pairs: "
                       r"\d+ agreement and 1 disagreement"):
        MarcConfidence(FitConfig(epochs=1)).fit(annotation_table(rows, small_layout), source="few.parquet")


def test_layout_mismatch_and_nan_features_when_scoring(trap_table):
    model = fit_confidence_model(trap_table, FitConfig(epochs=1, n_pairs=250))
    other = trap_annotations(5, layout=all_subsets_layout(2, 2), seed=1)
    with pytest.raises(ContractError, match="other.parquet, field 'probs': feature layout mismatch"):
        model.score(other, source="other.parquet")
    features = np.zeros((3, model.feature_layout_.n_features), dtype=np.float32)
    features[2, 5] = np.nan
    with pytest.raises(ContractError, match=r"row 2, field 'features': feature 'q\[a0,s2,ba\]' "
                       r"is nan \(not a finite number\)"):
        model.score_features(features)
    with pytest.raises(ContractError, match=r"expected shape \(n, \d+\), got \(3, 4\)"):
        model.score_features(np.zeros((3, 4)))


def test_unfitted_model_says_what_to_call(trap_table):
    with pytest.raises(NotFittedError, match=r"not fitted yet: call fit\(annotations\)"):
        MarcConfidence().score(trap_table)


def test_keyword_hyperparameters_scikit_learn_style(trap_table):
    from marc_ray.fit.estimator import MarcConfidence as Estimator

    model = Estimator(epochs=2, n_pairs=500, variant="vanilla", random_state=3)
    assert model.config == FitConfig(epochs=2, n_pairs=500, variant="vanilla", random_state=3)
    assert model.get_params()["epochs"] == 2 and model.column == "conf_vanilla"
    assert Estimator.from_config(model.config).get_params() == model.get_params()
    assert Estimator(FitConfig(epochs=5), epochs=2).config.epochs == 2   # keywords over a config
    assert model.set_params(epochs=1).config.epochs == 1 and model.config.n_pairs == 500
    with pytest.raises(ValueError, match=r"MarcConfidence: unknown key 'epoch'"):
        Estimator(epoch=3)
    with pytest.raises(ValueError, match=r"epochs must be an integer >= 1"):
        Estimator(epochs=0)
    fitted = Estimator(epochs=2, n_pairs=500, random_state=0).fit(trap_table)
    same = Estimator(FitConfig(epochs=2, n_pairs=500, random_state=0)).fit(trap_table)
    assert fitted.score(trap_table) == pytest.approx(same.score(trap_table))
