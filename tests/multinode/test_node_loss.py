"""Losing a worker node: the annotate job and a Ray Train fit survive it.

Each test adds a spare node to the shared cluster and removes a node that hosts the work, so
the folder's cluster is back to a head and one worker afterwards. Timings are printed (run
with -s) for docs/benchmarks.md.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from conftest import annotate_files

pytestmark = pytest.mark.slow


def alive_actor_nodes(fragment: str) -> list[str]:
    import ray._private.state as state

    return [info["Address"]["NodeID"] for info in state.actors().values()
            if fragment in info["ActorClassName"] and info["State"] == "ALIVE"]


def remove_node_hosting(multinode, fragment: str, ready, deadline_s: float, lost: dict) -> None:
    """Wait for ``ready()``, then remove a non-head node that hosts an alive ``fragment`` actor."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if ready():
            hosts = set(alive_actor_nodes(fragment)) - {multinode.head_id}
            victims = [node for node in multinode.workers if node.node_id in hosts]
            if victims:
                lost.update(before=ready(), at=time.monotonic(), node=victims[0].node_id)
                multinode.remove(victims[0])  # returns once its processes are gone
                lost["removed_after_s"] = time.monotonic() - lost["at"]
                return
        time.sleep(0.05)


def test_annotate_survives_losing_a_worker_node(multinode, tiny_model, tmp_path):
    from marc_ray.annotate.config import AnnotateConfig
    from marc_ray.annotate.job import annotate
    from marc_ray.contracts import read_table

    multinode.add_worker()  # a spare node: the lost engine actor has somewhere to go
    multinode.wait_until_idle()
    n_items = 40
    config = AnnotateConfig(**annotate_files(tmp_path, n_items), model=tiny_model,
                            n_annotators=2, k_shots=1, shard_size=2, batch_size=2,
                            mode="choice", num_workers=2, device="cpu", progress=False)

    def finished_shards() -> dict[str, bytes]:
        if not os.path.isdir(config.output):
            return {}
        names = [n for n in os.listdir(config.output) if n.startswith("part-")]
        return {n: open(os.path.join(config.output, n), "rb").read() for n in names}

    lost: dict = {}
    killer = threading.Thread(target=remove_node_hosting, daemon=True,
                              args=(multinode, "EngineBatches", finished_shards, 180, lost))
    start = time.monotonic()
    killer.start()
    try:
        summary = annotate(config)
        outcome = "finished on the remaining nodes"
    except Exception as error:  # a clean failure: the rerun below resumes
        outcome = f"failed cleanly ({type(error).__name__}), resumed on rerun"
        summary = None
    first_run = time.monotonic() - start
    killer.join(timeout=60)
    assert "node" in lost, "no node hosting an engine actor was seen"
    before = lost["before"]
    assert 0 < len(before) < n_items // 2  # lost mid-run
    rerun = annotate(config)  # resumes: writes what is missing, skips what is there
    assert sorted(rerun.shards_skipped + rerun.shards_written) == list(range(n_items // 2))
    if summary is not None:
        assert rerun.shards_written == []
    after = finished_shards()
    assert all(after[name] == data for name, data in before.items())  # byte-identical
    ids = read_table(config.output).column("id").to_pylist()
    assert sorted(ids) == sorted(f"item-{i}" for i in range(n_items))  # each item exactly once
    print(f"\nannotate node loss: {n_items} items / {n_items // 2} shards; node lost after "
          f"{lost['at'] - start:.1f} s with {len(before)} shards written; {outcome}; first run "
          f"{first_run:.1f} s; rerun wrote {len(rerun.shards_written)} shards; "
          f"{len(ids)} rows, {len(set(ids))} distinct ids")


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

    lost: dict = {}
    killer = threading.Thread(target=remove_node_hosting, daemon=True,
                              args=(multinode, "RayTrainWorker", checkpointed, 180, lost))
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
