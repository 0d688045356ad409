"""Losing a worker node: the annotate job survives it (the fit's case: test_node_loss_fit.py).

The test adds a spare node to the module's cluster and removes a node that hosts the work.
Timings are printed (run with -s) for docs/benchmarks.md.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from conftest import annotate_files, remove_node_hosting

pytestmark = pytest.mark.slow


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
