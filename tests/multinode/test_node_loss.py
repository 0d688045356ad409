"""Losing a worker node during annotate: the same `marc-ray run` finishes (the fit's case:
test_node_loss_fit.py).

Each test runs the CI demo pipeline (`marc-ray run`, a subprocess joined to the module's
cluster through ``ray.address``) and removes a node hosting an engine actor once the first
annotation shard is written:

- with a spare node, and with none (the cluster shrinks below ``num_workers``): the run exits 0
  and every item is annotated exactly once; the shards written before the loss are kept
  byte-identical;
- when no node is left that can host an engine actor (it needs a GPU only the lost node had):
  the run exits 5 after ``ray.capacity_timeout_s`` with one line naming the missing resource.

Timings are printed (run with -s) for docs/benchmarks_annotate.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import remove_node_hosting

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
JUDGE = "SmolLM2-135M-Instruct"
TIME_LIMIT_S = 1200  # cluster events get generous time under load; the pipeline itself is small
LOSS_DEADLINE_S = 600  # time for the first shard to appear (actor start-up under load)
CAPACITY_TIMEOUT_S = 120  # a cluster event: generous, as actors start slowly under load
# With no node left for an engine actor, the run waits this long for one to come back. It is
# measured from the node's loss, not from any work, so load does not stretch it (Ray Data's stall
# limit stays at STALL_TIMEOUT_S); shorter than the default so the test does not wait minutes.
NO_NODE_TIMEOUT_S = 30


def pipeline_config(folder: Path, address: str, capacity_timeout_s: float = CAPACITY_TIMEOUT_S,
                    **annotate) -> Path:
    """The CI demo, on the cluster, with shards small enough that the loss lands mid-annotate."""
    config = yaml.safe_load((REPO / "configs" / "ci_demo.yaml").read_text())
    config["annotate"].update({"num_workers": 2, "shard_size": 4, "batch_size": 8, **annotate})
    config["fit"]["backend"] = "local"  # the fit's node loss is test_node_loss_fit.py's
    config["ray"] = {"address": address, "capacity_timeout_s": capacity_timeout_s}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.glob("part-*.parquet")} if folder.is_dir() else {}


def run_losing_a_node(multinode, tmp_path: Path, capacity_timeout_s: float = CAPACITY_TIMEOUT_S,
                      **annotate) -> dict:
    """`marc-ray run` while a node hosting an engine actor is removed after the first shard."""
    run_dir = tmp_path / "run"
    shards = run_dir / "annotate" / JUDGE
    config = pipeline_config(tmp_path, multinode.cluster.address, capacity_timeout_s, **annotate)
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_AUTH_MODE="disabled",
               TOKENIZERS_PARALLELISM="false")
    lost: dict = {}
    killer = threading.Thread(target=remove_node_hosting, daemon=True,
                              args=(multinode, "EngineBatches", lambda: shard_bytes(shards),
                                    LOSS_DEADLINE_S, lost))
    start = time.monotonic()
    killer.start()
    result = subprocess.run([sys.executable, "-m", "marc_ray.cli", "run", str(config), "--out",
                             str(run_dir)], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=TIME_LIMIT_S - 60)
    wall = time.monotonic() - start
    killer.join(timeout=60)
    assert "node" in lost, f"no node hosting an engine actor was seen\n{result.stderr[-3000:]}"
    return {"result": result, "lost": lost, "wall": wall, "start": start, "shards": shards,
            "run_dir": run_dir}


def check_every_item_once(run: dict) -> None:
    from marc_ray.contracts import read_table

    result, lost = run["result"], run["lost"]
    assert result.returncode == 0, result.stderr[-4000:]
    assert "engine actors lost" in result.stderr  # the loss hit annotate, which carried on
    expected = read_table(str(run["run_dir"] / "data" / "comparisons.parquet")).column("id")
    ids = read_table(str(run["shards"])).column("id").to_pylist()
    assert sorted(ids) == sorted(expected.to_pylist())  # every item exactly once
    after = shard_bytes(run["shards"])
    assert all(after[name] == data for name, data in lost["before"].items())  # kept as written
    assert (run["run_dir"] / "report").is_dir()  # and the rest of the pipeline ran
    print(f"\nnode loss during `marc-ray run`: {len(ids)} items, node lost "
          f"{lost['at'] - run['start']:.1f} s in with {len(lost['before'])} shards written; "
          f"run exited 0 after {run['wall']:.1f} s")
    # recovery, for docs/benchmarks_annotate.md: when the last shard was written, against the
    # pace before the loss (the lost node's in-flight work is one shard per engine actor)
    written = sorted(p.stat().st_mtime for p in run["shards"].glob("part-*.parquet"))
    before = [t for t in written if t <= lost["wall"]]
    pace = (before[-1] - before[0]) / (len(before) - 1) if len(before) > 1 else float("nan")
    print(f"annotate recovered: its last shard written {written[-1] - lost['wall']:.1f} s after "
          f"the loss, {len(written) - len(before)} shards after it; before it, one shard every "
          f"{pace:.1f} s")


def test_run_survives_losing_a_worker_node(multinode, tmp_path):
    multinode.add_worker()  # a spare node: the lost engine actor has somewhere to go
    multinode.wait_until_idle()
    check_every_item_once(run_losing_a_node(multinode, tmp_path))


def test_run_completes_on_a_cluster_shrunk_below_num_workers(multinode, tmp_path):
    while len(multinode.workers) > 1:  # head + one worker: 2 CPUs for num_workers 2
        multinode.remove(multinode.workers[0])
    if not multinode.workers:
        multinode.add_worker()
    multinode.wait_until_idle()
    run = run_losing_a_node(multinode, tmp_path)  # the head's 1 CPU is all that is left
    check_every_item_once(run)


def test_no_node_left_for_an_engine_actor_exits_with_one_line(multinode, tmp_path):
    # The engine actor asks for a GPU; only the added node declares one (a Ray resource: the
    # model itself runs on its CPU). Losing that node leaves no node that can host an actor.
    multinode.add_worker(num_gpus=1)
    multinode.wait_until_idle()
    run = run_losing_a_node(multinode, tmp_path, NO_NODE_TIMEOUT_S, num_workers=1,
                            num_gpus_per_worker=1, device="cpu")
    result = run["result"]
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 5, result.stderr[-4000:]
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith("marc-ray run: failed: no capacity: no node of the cluster has "
                                "1 GPU for an engine actor"), lines[-1]
    assert "rerun to resume" in lines[-1]
    print(f"\nno capacity after the loss: exit 5 {run['wall'] - (run['lost']['at'] - run['start']):.1f}"
          f" s after the node was lost (ray.capacity_timeout_s: {NO_NODE_TIMEOUT_S})")
