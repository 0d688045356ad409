"""A real multi-node Ray cluster on this machine, one per test module.

``ray.cluster_utils.Cluster`` starts a head raylet and a second raylet, each a node with its
own resources (1 CPU each, so work that needs 2 CPUs must use both nodes). The suite's
``ray_local`` session cluster, if it is up, is shut down first and started again afterwards.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "annotate"))  # annotate_toys

from annotate_toys import arithmetic_rows, write_jsonl  # noqa: E402

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


# Cluster events (a raylet starting, a lost node's actors freeing their CPUs) get generous time:
# on a loaded 2-core machine a raylet can take minutes to register (Ray's own default is 30 s)
NODE_START_TIMEOUT_S = 300
IDLE_TIMEOUT_S = 300
# Ray waits a fixed 30 s for a new raylet to register ("The current node timed out during
# startup"); under load that fails now and then, and a second try passes
NODE_START_TRIES = 3


def start_node(start):
    """``start()`` (a raylet starting), tried again when Ray's fixed start-up wait runs out."""
    for attempt in range(NODE_START_TRIES):
        try:
            return start()
        except Exception as error:  # noqa: BLE001 - Ray raises a bare Exception here
            if "timed out during startup" not in str(error) or attempt + 1 == NODE_START_TRIES:
                raise
            time.sleep(5)


class MultiNode:
    """The cluster, its head and worker node ids, and a way to grow it for node-loss tests."""

    def __init__(self, cluster):
        import ray

        self.cluster = cluster
        self.head_id = cluster.head_node.node_id
        self.workers = []
        self.add_worker()
        ray.init(address=cluster.address, log_to_driver=False)

    def add_worker(self, **resources):
        node = start_node(lambda: self.cluster.add_node(wait=False, num_cpus=1, **resources))
        self.cluster.wait_for_nodes(timeout=NODE_START_TIMEOUT_S)
        self.workers.append(node)
        return node

    def remove(self, node) -> None:
        self.cluster.remove_node(node, allow_graceful=False)
        self.workers.remove(node)

    def wait_until_idle(self, timeout_s: float = IDLE_TIMEOUT_S) -> None:
        """Wait until every CPU of the alive nodes is free (actors of an earlier test gone)."""
        import time

        import ray

        deadline = time.monotonic() + timeout_s
        while ray.available_resources().get("CPU", 0) < ray.cluster_resources().get("CPU", 0):
            if time.monotonic() > deadline:
                raise TimeoutError(f"CPUs still held after {timeout_s} s: "
                                   f"{ray.available_resources()} of {ray.cluster_resources()}")
            time.sleep(0.5)

    def alive_node_ids(self) -> set[str]:
        import ray

        return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


@pytest.fixture(scope="module")
def multinode(tmp_path_factory):
    """A head and one worker node, 1 CPU each, shared by the tests of one module.

    Per module, not per folder: the node-loss tests leave a cluster whose lost node the GCS
    declares dead only after its heartbeats time out, and the next module starts clean.
    """
    import ray
    from ray.cluster_utils import Cluster

    # the whole cluster is on this machine, so its temporary folders are shared by every node
    mounts = os.environ.get("MARC_RAY_SHARED_MOUNTS")
    os.environ["MARC_RAY_SHARED_MOUNTS"] = str(tmp_path_factory.getbasetemp())
    was_up = ray.is_initialized()
    ray.shutdown()
    cluster = Cluster()
    start_node(lambda: cluster.add_node(wait=False, num_cpus=1, include_dashboard=False))
    cluster.wait_for_nodes(timeout=NODE_START_TIMEOUT_S)
    try:
        yield MultiNode(cluster)
    finally:
        ray.shutdown()
        cluster.shutdown()
        if mounts is None:
            os.environ.pop("MARC_RAY_SHARED_MOUNTS", None)
        else:
            os.environ["MARC_RAY_SHARED_MOUNTS"] = mounts
        if was_up:  # the suite's ray_local cluster (tests/conftest.py), as it was started
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)


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
                lost.update(before=ready(), at=time.monotonic(), wall=time.time(),
                            node=victims[0].node_id)
                multinode.remove(victims[0])  # returns once its processes are gone
                lost["removed_after_s"] = time.monotonic() - lost["at"]
                return
        time.sleep(0.05)


def actor_nodes(class_fragment: str) -> dict[str, str]:
    """actor id → node id of every actor (alive or dead) whose class name holds the fragment."""
    import ray._private.state as state

    return {actor_id: info["Address"]["NodeID"] for actor_id, info in state.actors().items()
            if class_fragment in info["ActorClassName"]}


@pytest.fixture(scope="package")
def tiny_model(tmp_path_factory) -> str:
    from marc_ray.annotate.models import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


def annotate_files(folder: Path, n_items: int) -> dict:
    return {"input": write_jsonl(folder / "items.jsonl", arithmetic_rows("item-", 0, n_items)),
            "pool": write_jsonl(folder / "pool.jsonl", arithmetic_rows("pool-", 500, 8)),
            "output": str(folder / "annotations")}


TEST_TIME_LIMIT_S = 600  # every test here is bounded: a hung cluster fails the test, not the suite
                         # (generous: under load the cluster events above take minutes)


@pytest.fixture(autouse=True)
def bounded(request):
    """Fail a test that runs past its limit (SIGALRM in the main thread; no plugin needed)."""
    import signal

    limit = getattr(request.module, "TIME_LIMIT_S", TEST_TIME_LIMIT_S)

    def expire(signum, frame):
        raise TimeoutError(f"{request.node.nodeid} ran past its {limit} s limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
