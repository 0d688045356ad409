"""The collapse guard: the fitted model is the epoch with the lowest validation ranking risk.

The case (found by scanning seeds of ``trap_annotations`` with an [8, 4] net at AdamW's 0.01,
the cascade test's original settings): 57 training items, the network's output is flat at its
initialisation, the complexity penalty alone drives AdamW, ‖W‖ shrinks from 1.9 to 0.01, C_θ
ranks for a few epochs on the way down and ends as a single constant. MARC's training
objective falls the whole way (a constant C costs ≈ log 2), so only the validation ranking risk
sees that the last iterate is worthless.
"""

import math
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from marc_ray.calibrate import auroc
from marc_ray.contracts import agreement
from marc_ray.fit import FitConfig, MarcConfidence
from marc_ray.fit.data import prepare
from marc_ray.fit.synthetic import all_subsets_layout, trap_annotations
from marc_ray.fit.train import KEPT_FILE, fit_local, fit_ray, kept_iterate_key

COLLAPSING = FitConfig(epochs=30, n_pairs=400, pairs_per_step=100, hidden_sizes=(8, 4),
                       learning_rate=0.01, random_state=20)


@pytest.fixture(scope="module")
def collapsing_table():
    return trap_annotations(100, layout=all_subsets_layout(3, 3), seed=20)


def held_out_auroc(model: MarcConfidence, table) -> float:
    test = table.filter(np.asarray(table.column("split").to_pylist()) == "test")
    agree, kept = agreement(np.asarray(test.column("pred").to_pylist(), dtype=object),
                            np.asarray(test.column("human_label").to_pylist(), dtype=object), "drop")
    return auroc(model.score(test, raw=True)[kept], agree)


@pytest.fixture(scope="module")
def guarded(collapsing_table, tmp_path_factory):
    """The fit, its checkpoint folder (model.safetensors: the last epoch's weights)."""
    folder = str(tmp_path_factory.mktemp("collapse") / "checkpoint")
    data = prepare(collapsing_table, COLLAPSING)
    network, state = fit_local(COLLAPSING, data.train, data.valid, checkpoint_dir=folder)
    return MarcConfidence(COLLAPSING).set_trained(network, state, data), folder, data


def test_the_last_epoch_collapses_and_the_guard_keeps_a_ranking_model(guarded, collapsing_table):
    model, folder, _ = guarded
    history = model.history_
    # without the guard: the last weights give one constant confidence, held-out AUROC 0.5
    last = MarcConfidence.load(model.save(os.path.join(folder, "..", "kept")))
    last.model_.load_state_dict(load_file(os.path.join(folder, "model.safetensors")))
    test = collapsing_table.filter(
        np.asarray(collapsing_table.column("split").to_pylist()) == "test")
    assert np.unique(last.score(test, raw=True)).size == 1
    assert held_out_auroc(last, collapsing_table) == 0.5
    assert history[-1]["weight_norm"] < 0.05 and history[-1]["valid_auroc"] == 0.5
    # ... and MARC's own objective cannot see it: it is lowest near the end, in the collapse
    assert int(np.argmin([h["objective"] for h in history])) >= 20
    # with the guard: an earlier epoch that ranks, on held-out items it never chose on
    kept = model.best_epoch_
    assert kept < 15 and history[-1]["best_epoch"] == kept
    assert history[kept]["weight_norm"] > 0.2
    assert history[kept]["valid_auroc"] == max(h["valid_auroc"] for h in history)
    assert held_out_auroc(model, collapsing_table) > 0.8
    assert model.gamma_ == model.gamma_history_[kept] and model.bound_ == {
        k[len("bound_"):]: v for k, v in history[kept].items() if k.startswith("bound_")}
    assert model.best_reason_.startswith("lowest validation ranking risk")
    # the choice is saved with the model and read back
    loaded = MarcConfidence.load(os.path.join(folder, "..", "kept"))
    assert loaded.best_epoch_ == kept and loaded.best_reason_ == model.best_reason_
    assert np.array_equal(loaded.score(test), model.score(test))


def test_a_resumed_run_keeps_the_guards_choice_from_the_checkpoint(guarded, collapsing_table,
                                                                   tmp_path):
    model, folder, data = guarded
    assert os.path.exists(os.path.join(folder, KEPT_FILE))
    # stop after epoch 11 (the kept epoch is earlier), resume to 30: same epoch, same weights
    partial = str(tmp_path / "partial")
    fit_local(COLLAPSING.replace(epochs=12), data.train, data.valid, checkpoint_dir=partial)
    resumed, state = fit_local(COLLAPSING, data.train, data.valid, checkpoint_dir=partial,
                               resume=True)
    assert state["history"][-1]["resumed_from"] == 11
    assert state["best_epoch"] == model.best_epoch_ < 11
    for a, b in zip(model.model_.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_the_keys_order_validation_then_training_pairs_then_objective():
    assert kept_iterate_key(0.1, 0.4, 0.9) < kept_iterate_key(0.2, 0.0, 0.0)
    assert kept_iterate_key(0.1, 0.2, 0.9) < kept_iterate_key(0.1, 0.3, 0.0)
    assert kept_iterate_key(0.0, 0.0, 0.1) < kept_iterate_key(0.0, 0.0, 0.2)
    # no validation part with both kinds: the training pairs decide
    assert kept_iterate_key(math.nan, 0.1, 0.9) < kept_iterate_key(math.nan, 0.2, 0.1)


@pytest.mark.slow
def test_ray_train_keeps_the_same_epoch_across_a_restart(ray_local, guarded, tmp_path):
    model, _, data = guarded
    # one worker (the local loop's arithmetic exactly); rank 0 crashes at epoch 12, Train
    # restarts from epoch 9's checkpoint, which must carry the epoch kept before it
    # (14 epochs: the kept epoch is the same as in 30; Ray's start-up is the test's cost)
    config = COLLAPSING.replace(epochs=14, backend="ray", num_workers=1, checkpoint_every=10,
                                storage_path=str(tmp_path / "ray"))
    network, state = fit_ray(config, data.train, data.valid,
                             extra_loop_config={"fail_at_epoch": 12,
                                                "fail_marker": str(tmp_path / "crashed")})
    assert (tmp_path / "crashed").exists()
    assert {h["resumed_from"] for h in state["history"]} == {-1, 9}
    assert state["best_epoch"] == model.best_epoch_ < 9
    for a, b in zip(model.model_.state_dict().values(), network.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_without_a_validation_part_of_both_kinds_the_training_pairs_decide(collapsing_table):
    from marc_ray.fit.data import Arrays

    data = prepare(collapsing_table, COLLAPSING)
    only = data.valid.agree >= 0.5  # agreements only: the validation ranking risk is undefined
    valid = Arrays(*(getattr(data.valid, k)[only] for k in ("features", "agree", "soft", "ids")))
    _, state = fit_local(COLLAPSING, data.train, valid)
    history = state["history"]
    assert all(math.isnan(h["valid_ranking_risk"]) for h in history)
    assert state["best"]["reason"].startswith("no validation part with both kinds")
    keys = [(h["train_pair_ranking_risk"], h["objective"]) for h in history]
    assert state["best_epoch"] == min(range(len(keys)), key=keys.__getitem__)
    assert history[state["best_epoch"]]["train_pair_ranking_risk"] < 0.5  # not the constant
