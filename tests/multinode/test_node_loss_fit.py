"""Losing a worker node during a Ray Train fit: training resumes from its last checkpoint.

A module of its own, so its cluster is fresh: the annotate node-loss test's engine actors can
hold CPUs of the shared cluster for a while after its job ends. Timings are printed (run with
-s) for docs/benchmarks.md.
"""

from __future__ import annotations

import threading
import time

import pytest

from conftest import remove_node_hosting

pytestmark = pytest.mark.slow


def test_fit_resumes_from_its_checkpoint_after_losing_a_worker_node(multinode, tmp_path):
    from marc_ray.fit import FitConfig
    from marc_ray.fit.data import prepare
    from marc_ray.fit.synthetic import all_subsets_layout, trap_annotations
    from marc_ray.fit.train import fit_ray

    multinode.add_worker()  # the restarted worker group needs 2 CPUs on the nodes left
    multinode.wait_until_idle()
    table = trap_annotations(300, layout=all_subsets_layout(3, 3), seed=0)
    # epochs long enough (~1 s each) that the loss lands mid-fit, not after its last report
    config = FitConfig(epochs=10, n_pairs=20000, backend="ray", num_workers=2, max_failures=2,
                       checkpoint_every=2, storage_path=str(tmp_path / "train"))
    data = prepare(table, config)
    run_folder = tmp_path / "train" / "node-loss"

    def checkpointed() -> list[str]:
        return sorted(p.name for p in run_folder.glob("checkpoint_*")) if run_folder.is_dir() else []

    def two_checkpoints() -> list[str]:
        # A checkpoint's folder appears when rank 0 uploads it, a moment before Train's
        # controller registers it; a node lost in between restarts from scratch (seen once in
        # CI). A second folder means the first report was taken (each report waits for it).
        return checkpointed() if len(checkpointed()) >= 2 else []

    lost: dict = {}
    killer = threading.Thread(target=remove_node_hosting, daemon=True,
                              args=(multinode, "RayTrainWorker", two_checkpoints, 180, lost))
    start = time.monotonic()
    killer.start()
    model, state = fit_ray(config, data.train, data.valid, name="node-loss")
    wall = time.monotonic() - start
    killer.join(timeout=60)
    assert "node" in lost, "no node hosting a Ray Train worker was seen"
    epochs = [h["epoch"] for h in state["history"]]
    assert epochs == list(range(10))                     # every epoch once, in order
    resumed = sorted({h["resumed_from"] for h in state["history"]} - {-1})
    assert resumed and resumed[0] % 2 == 1               # restarted from a checkpoint epoch
    print(f"\nfit node loss: node lost {lost['at'] - start:.1f} s into the fit, after "
          f"{len(lost['before'])} checkpoint(s); resumed from epoch {resumed}; fit {wall:.1f} s")
