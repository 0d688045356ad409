"""The sweep on Ray Tune: what the margin line search does not set (β, the γ range, τ, the step).

Since issue 13, γ itself is chosen every epoch by the line search on MARC's training objective;
what remains to tune is the penalty weight β (``complexity_weight``), the search range
(``margin_min``, ``margin_max``), the temperature τ and the learning rate, selected by the
validation ranking risk (the default). ``select="bound"`` is kept for comparison only: the bound's
O(·) constants are unknown, so its value with them set to 1 is a diagnostic, not a criterion.

Tune wraps the same training loop instead of copying it. Two trial kinds:

* ``trainer="local"``: each trial runs the loop in its own process (:func:`fit_local`) and
  reports every epoch to Tune (about 5 s of overhead per trial; the default);
* ``trainer="ray_train"``: each trial starts a ``TorchTrainer`` (DDP workers) and forwards its
  reports with ``TuneReportCallback`` (the Train V2 pattern: a function trainable, a trial
  request of 0.01 CPU, workers of 0.99 CPU; about 25 s of overhead per trial).

An ASHA scheduler stops weak trials early on the selection metric: the validation ranking risk
(``select="valid_ranking_risk"``) or the bound's right-hand side (``select="bound"``). The best
configuration is then refitted locally on the same data and seed, which reproduces its trial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .config import FitConfig, TuneOptions
from .data import prepare

# the validation ranking risk of the epoch the collapse guard keeps (the model a trial returns),
# not of the trial's last epoch
_METRIC = {"valid_ranking_risk": "kept_valid_ranking_risk", "bound": "bound_bound"}


def default_search_space() -> dict:
    """MARC's defaults in the middle of each range (γ is not swept: the line search sets it)."""
    from ray import tune

    return {
        "complexity_weight": tune.loguniform(1e-5, 1e-2),
        "margin_min": tune.choice([0.003, 0.01, 0.03]),
        "margin_max": tune.choice([0.5, 1.0]),
        "temperature": tune.choice([0.05, 0.1, 0.2]),
        "learning_rate": tune.loguniform(3e-4, 3e-3),
    }


@dataclass
class TuneOutcome:
    """What the sweep found.

    best_config : FitConfig (the base config with the best trial's values)
    best_metrics : the best trial's last reported metrics
    trials : one dict per trial (its values and last metrics)
    model : the refitted MarcConfidence, or None when ``refit=False``
    """

    best_config: FitConfig
    best_metrics: dict
    trials: list[dict] = field(default_factory=list)
    model: object = None


def _finite(metrics: dict) -> dict:
    # Tune's schedulers compare numbers: an undefined risk is reported as the worst value.
    return {k: (1.0 if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def _local_trial(params: dict, base: dict, data) -> None:
    from ray import tune

    from .train import fit_local

    config = FitConfig.from_dict({**base, **params})
    fit_local(config, data.train, data.valid, report=lambda metrics: tune.report(_finite(metrics)))


def _ray_train_trial(params: dict, base: dict, data) -> None:
    from ray.tune.integration.ray_train import TuneReportCallback

    from .train import trainer_for

    # every epoch reported: ASHA compares trials epoch by epoch (~0.5 s per report)
    config = FitConfig.from_dict({**base, **params, "backend": "ray", "cpus_per_worker": 0.99,
                                  "checkpoint_every": 1})
    trainer_for(config, data.train, data.valid, callbacks=[TuneReportCallback()]).fit()


def tune_margin(annotations, config: FitConfig | None = None, *,
                search_space: dict | None = TuneOptions.search_space,
                num_samples: int = TuneOptions.num_samples, select: str = TuneOptions.select,
                trainer: str = TuneOptions.trainer, grace_period: int = TuneOptions.grace_period,
                max_concurrent_trials: int | None = TuneOptions.max_concurrent_trials,
                storage_path: str | None = TuneOptions.storage_path,
                name: str | None = TuneOptions.name, refit: bool = True) -> TuneOutcome:
    """Sweep FitConfig values with Ray Tune and ASHA early stopping.

    Parameters
    ----------
    annotations : pyarrow.Table or path
    config : FitConfig
        The base configuration; the search space overrides some of its fields.
    search_space : dict FitConfig field → Tune domain, default=default_search_space()
    num_samples : int
        Trials drawn from the space.
    select : {"valid_ranking_risk", "bound"}
    trainer : {"local", "ray_train"}
    grace_period : int
        Epochs every trial runs before ASHA may stop it.
    max_concurrent_trials : int, optional
    storage_path, name : where Tune writes its results
    refit : bool
        Refit the best configuration and return the model.

    Returns
    -------
    TuneOutcome
    """
    # the sweep's settings get TuneOptions' one check (the pipeline's fit.tune_options too)
    TuneOptions(search_space=search_space, num_samples=num_samples, select=select,
                trainer=trainer, grace_period=grace_period,
                max_concurrent_trials=max_concurrent_trials, storage_path=storage_path, name=name)
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    config = config or FitConfig()
    space = default_search_space() if search_space is None else dict(search_space)
    data = prepare(annotations, config)
    base = config.to_dict()
    if trainer == "local":
        trainable = tune.with_resources(tune.with_parameters(_local_trial, base=base, data=data),
                                        {"cpu": 1})
    else:
        trainable = tune.with_resources(tune.with_parameters(_ray_train_trial, base=base, data=data),
                                        {"cpu": 0.01})
    metric = _METRIC[select]
    scheduler = ASHAScheduler(time_attr="epoch", max_t=config.epochs,
                              grace_period=max(1, min(grace_period, config.epochs)),
                              reduction_factor=2)
    tuner = tune.Tuner(
        trainable, param_space=space,
        tune_config=tune.TuneConfig(metric=metric, mode="min", num_samples=num_samples,
                                    scheduler=scheduler,
                                    max_concurrent_trials=max_concurrent_trials),
        run_config=ray.tune.RunConfig(name=name, storage_path=storage_path, verbose=0))
    grid = tuner.fit()
    trials = []
    for result in grid:
        if result.error is not None:
            raise RuntimeError(f"a Tune trial failed: {result.error}") from result.error
        trials.append({"config": dict(result.config), "metrics": dict(result.metrics or {})})
    best = grid.get_best_result(metric=metric, mode="min", scope="last")
    best_config = config.replace(**best.config)
    outcome = TuneOutcome(best_config, dict(best.metrics), trials)
    if refit:
        from .estimator import MarcConfidence

        outcome.model = MarcConfidence(best_config).fit(annotations)
    return outcome
