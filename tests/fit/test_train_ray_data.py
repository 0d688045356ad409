"""Features through Ray Data (above fit.train.RAY_DATA_MIN_BYTES) or through the object store:
every worker gets the same rows in the same order, so the fitted model is the same (issue 11)."""

import numpy as np
import pytest

from marc_ray.fit import FitConfig
from marc_ray.fit import train as train_module
from marc_ray.fit.data import prepare
from marc_ray.fit.train import dataset_columns, fit_ray, ray_datasets, worker_shard


@pytest.mark.parametrize("world_size", [1, 3])
def test_each_rank_dataset_holds_that_rank_shard_in_order(ray_local, trap_table, monkeypatch,
                                                          world_size):
    monkeypatch.setattr(train_module, "RAY_DATA_BLOCK_ROWS", 37)  # several blocks per rank
    data = prepare(trap_table, FitConfig())
    datasets = ray_datasets(data.train, data.valid, world_size)
    assert sorted(datasets) == sorted([f"train_{r}" for r in range(world_size)] + ["valid"])
    columns = train_module._columns(data.train)
    n_features = data.train.features.shape[1]
    for rank in range(world_size):
        got = dataset_columns(datasets[f"train_{rank}"].iterator(), n_features)
        expected = worker_shard(columns, rank, world_size)
        for key in ("features", "agree", "soft"):
            assert got[key].dtype == np.float32 and np.array_equal(got[key], expected[key]), key
    valid = dataset_columns(datasets["valid"].iterator(), n_features)
    assert np.array_equal(valid["features"], data.valid.features.astype(np.float32))


def test_an_empty_dataset_keeps_the_feature_width(ray_local, trap_table):
    data = prepare(trap_table, FitConfig())
    empty = type(data.valid)(data.valid.features[:0], data.valid.agree[:0], data.valid.soft[:0],
                             data.valid.ids[:0])
    valid = dataset_columns(ray_datasets(data.train, empty, 1)["valid"].iterator(),
                            data.train.features.shape[1])
    assert valid["features"].shape == (0, data.train.features.shape[1]) and len(valid["agree"]) == 0


@pytest.mark.slow
def test_ray_data_and_object_store_paths_fit_the_same_model(ray_local, trap_table, tmp_path):
    config = FitConfig(epochs=2, n_pairs=500, backend="ray", num_workers=2,
                       storage_path=str(tmp_path / "ray"))
    data = prepare(trap_table, config)
    fits = {}
    for name, threshold in (("ray_data", 0), ("object_store", 1 << 60)):
        fits[name] = fit_ray(config, data.train, data.valid, name=name, ray_data_min_bytes=threshold)
    (net_a, state_a), (net_b, state_b) = fits["ray_data"], fits["object_store"]
    assert state_a["gamma"] == state_b["gamma"]
    assert [h["gamma"] for h in state_a["history"]] == [h["gamma"] for h in state_b["history"]]
    for (key, a), b in zip(net_a.state_dict().items(), net_b.state_dict().values()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6, err_msg=key)
