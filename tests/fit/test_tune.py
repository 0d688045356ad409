"""Ray Tune: a tiny sweep (2 trials, local-loop trainables) with ASHA, selection, refit."""

import math

import pytest

from marc_ray.fit import FitConfig, tune_margin


@pytest.mark.slow
def test_tiny_sweep_selects_and_refits(ray_local, trap_table, tmp_path):
    from ray import tune

    config = FitConfig(epochs=2, n_pairs=500)
    space = {"margin_init": tune.grid_search([0.05, 0.5]), "temperature": 0.1}
    outcome = tune_margin(trap_table, config, search_space=space, num_samples=1, select="bound",
                          grace_period=1, storage_path=str(tmp_path / "tune"), name="tiny")
    assert len(outcome.trials) == 2
    bounds = [t["metrics"]["bound_bound"] for t in outcome.trials]
    assert outcome.best_metrics["bound_bound"] == pytest.approx(min(bounds))
    assert outcome.best_config.margin_init in (0.05, 0.5)
    assert outcome.best_config.epochs == 2 and math.isfinite(outcome.model.bound_["bound"])


def test_bad_sweep_arguments_are_refused(trap_table):
    with pytest.raises(ValueError, match=r"select must be one of \['bound', 'valid_ranking_risk'\]"):
        tune_margin(trap_table, select="auc")
    with pytest.raises(ValueError, match=r"search_space names unknown FitConfig fields \['margin'\]"):
        tune_margin(trap_table, search_space={"margin": 0.1})


@pytest.mark.slow
def test_the_pipelines_tune_stage_sweeps_a_file_and_saves_the_best_model(ray_local, trap_table,
                                                                         tmp_path):
    """fit.stage.fit_stage with ``fit.tune: true`` hands the sweep the file's path (its training
    rows are read, not the whole table) and saves the refitted best model."""
    import pyarrow.parquet as pq

    from marc_ray.fit.config import FitSection
    from marc_ray.fit.estimator import MarcConfidence
    from marc_ray.fit.stage import fit_stage

    path = tmp_path / "annotations.parquet"
    pq.write_table(trap_table, path)

    class JoinedAlready:  # the run's RayConfig; the ray_local fixture has started Ray
        def join(self):
            pass

    section = FitSection.from_dict({"tune": True, "epochs": 2, "n_pairs": 500,
                                    "max_rows_per_set": 100, "tune_options": {
                                        "num_samples": 2, "grace_period": 1,
                                        "storage_path": str(tmp_path / "tune")}})
    details = fit_stage(section, str(path), str(tmp_path / "model"), JoinedAlready())
    assert details["tuned trials"] == 2
    model = MarcConfidence.load(tmp_path / "model")
    assert model.n_train_ == details["n_train"] <= 100 and math.isfinite(model.gamma_)
    # the stage line says what was sampled, and the saved model knows it
    assert details["training rows sampled"] == f"100 of {model.rows_sampled_['training'][1]}"
    assert model.rows_sampled_["training"][1] > 100
