"""Ray Train: DDP on two CPU workers, a worker killed mid-fit, resumed from its checkpoint."""

import math

import numpy as np
import pytest

from marc_ray.fit import FitConfig, MarcConfidence
from marc_ray.fit.data import prepare
from marc_ray.fit.train import fit_ray


@pytest.mark.slow
def test_killed_worker_resumes_from_checkpoint_and_finishes(ray_local, trap_table, tmp_path):
    marker = tmp_path / "crashed"
    config = FitConfig(epochs=4, n_pairs=1000, backend="ray", num_workers=2, max_failures=1,
                       checkpoint_every=1,
                       storage_path=str(tmp_path / "ray"))
    # rank 0 calls os._exit(1) at the start of epoch 2 on the first attempt (the marker is unset)
    data = prepare(trap_table, config)
    network, state = fit_ray(config, data.train, data.valid,
                             extra_loop_config={"fail_at_epoch": 2, "fail_marker": str(marker)})
    model = MarcConfidence(config).set_trained(network, state, data)
    assert marker.exists()                                      # the crash did happen
    epochs = [h["epoch"] for h in model.history_]
    assert epochs == [0, 1, 2, 3]                               # ... and every epoch finished
    resumed = [h["resumed_from"] for h in model.history_]
    assert resumed == [-1, -1, 1, 1]            # epochs 2-3 ran after a restart from epoch 1's checkpoint
    assert all(math.isfinite(v) for v in model.bound_.values())
    scores = model.score(trap_table)
    assert np.isfinite(scores).all() and scores.std() > 0.01


def test_worker_shards_partition_the_rows_and_deal_disagreements_evenly():
    from marc_ray.fit.train import worker_shard

    agree = np.array([1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 1], dtype=np.float32)
    columns = {"features": np.arange(11, dtype=np.float32)[:, None], "agree": agree,
               "soft": agree.copy()}
    shards = [worker_shard(columns, rank, 3) for rank in range(3)]
    rows = np.concatenate([s["features"][:, 0] for s in shards])
    assert sorted(rows.tolist()) == list(range(11))                   # every row once
    assert [int((s["agree"] < 0.5).sum()) for s in shards] == [1, 1, 1]  # 3 disagreements dealt
    again = worker_shard(columns, 1, 3)                                  # a restart: same rows
    assert np.array_equal(again["features"], shards[1]["features"])


def test_checkpoint_every_n_epochs_and_at_the_last():
    from marc_ray.fit.train import is_checkpoint_epoch

    config = FitConfig(epochs=25, checkpoint_every=10)
    assert [e for e in range(25) if is_checkpoint_epoch(config, e)] == [9, 19, 24]
    with pytest.raises(ValueError, match="checkpoint_every"):
        FitConfig(checkpoint_every=0)
