"""The Ray Data annotate job: end to end, resume, a killed worker, bad input before any engine."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from marc_ray.annotate import job
from marc_ray.annotate.config import AnnotateConfig
from marc_ray.annotate.job import annotate, prepare
from marc_ray.contracts import ContractError, read_table, validate_annotations

from annotate_toys import arithmetic_rows, write_jsonl


def config_for(files, model, **changes) -> AnnotateConfig:
    settings = dict(files, model=model, n_annotators=2, k_shots=2, shard_size=4, batch_size=4,
                    mode="choice", progress=False)
    settings.update(changes)
    return AnnotateConfig(**settings)


def check_output(output, ids, layout_shape):
    table, layout = validate_annotations(read_table(output), output)
    assert layout.shape == layout_shape
    assert sorted(table.column("id").to_pylist()) == sorted(ids)  # every item exactly once
    return table


# ---- bad input: clear errors from prepare(), before Ray or an engine starts --------------------

def test_pool_overlap_refused(toy_files, tiny_model, tmp_path):
    overlap = write_jsonl(tmp_path / "pool2.jsonl", arithmetic_rows("item-", 3, 6))
    with pytest.raises(ContractError, match="id 'item-3' is also in the few-shot pool"):
        prepare(config_for(dict(toy_files, pool=overlap), tiny_model))


def test_malformed_rows_refused(toy_files, tiny_model, tmp_path):
    rows = arithmetic_rows("item-", 0, 3)
    rows[2]["response_b"] = None
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ContractError, match=r"bad.jsonl, row 2, field 'response_b': missing value"):
        prepare(config_for(dict(toy_files, input=bad), tiny_model))


def test_unknown_model_and_labels_refused(toy_files, tiny_model):
    with pytest.raises(ValueError, match="unknown model '/nowhere/judge'"):
        prepare(config_for(toy_files, "/nowhere/judge"))
    with pytest.raises(ValueError, match="no single token for label 'Response-A-xyz'"):
        prepare(config_for(toy_files, tiny_model, labels=("Response-A-xyz", "B")))
    with pytest.raises(ContractError, match="k_shots=5 is larger than the examples"):
        prepare(config_for(toy_files, tiny_model, k_shots=5))


def test_prepare_builds_every_run(toy_files, tiny_model):
    plan = prepare(config_for(toy_files, tiny_model))
    assert plan.n_shards == 3 and plan.builder.runs_per_item == 2 * 3 * 2 + 2
    names = [a.name for a in plan.builder.annotators]
    assert len(set(names)) == 2 and set(names) <= {"human-0", "human-1", "human-2"}


# ---- the job on Ray ------------------------------------------------------------------------------

@pytest.mark.slow
def test_end_to_end_with_resume(ray_local, toy_files, tiny_model, monkeypatch):
    config = config_for(toy_files, tiny_model)
    real_write = job._write_shard
    written = []

    def interrupted(plan, shard, results):
        if len(written) == 1:
            raise KeyboardInterrupt  # the run dies after its first shard
        real_write(plan, shard, results)
        written.append(shard)

    monkeypatch.setattr(job, "_write_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        annotate(config)
    monkeypatch.setattr(job, "_write_shard", real_write)
    first = written[0]
    stamp = os.stat(job.shard_path(config.output, first)).st_mtime_ns

    summary = annotate(config)  # resume
    assert summary.shards_skipped == [first]
    assert sorted(summary.shards_written) == sorted({0, 1, 2} - {first})
    assert os.stat(job.shard_path(config.output, first)).st_mtime_ns == stamp  # untouched
    table = check_output(config.output, [f"item-{i}" for i in range(12)], (2, 3, 2))
    row = table.to_pylist()[0]
    assert row["judge"] == os.path.basename(tiny_model) and row["human_label"] in ("a", "b")
    assert all(status == "ok" for status in row["status"]) and len(row["probs"]) == 12
    assert 0.0 < row["conf_simulated"] <= 1.0 and row["pred"] in ("a", "b")

    again = annotate(config)  # nothing left: no engine starts
    assert again.shards_written == [] and again.shards_skipped == [0, 1, 2]
    with pytest.raises(ContractError, match="holds annotations of a different run"):
        annotate(config_for(toy_files, tiny_model, k_shots=1))


def _engine_worker_pids() -> list[int]:
    """Process ids of the engine actors (Ray titles them after the map_batches UDF)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as stream:
                command = stream.read().decode(errors="replace")
        except OSError:
            continue  # the process ended meanwhile
        if "MapWorker(MapBatches(EngineBatches))" in command:
            pids.append(int(entry))
    return pids


@pytest.mark.slow
def test_killed_worker_every_item_exactly_once(ray_local, tmp_path, tiny_model):
    n_items = 60
    files = {"input": write_jsonl(tmp_path / "items.jsonl", arithmetic_rows("item-", 0, n_items)),
             "pool": write_jsonl(tmp_path / "pool.jsonl", arithmetic_rows("pool-", 500, 8)),
             "output": str(tmp_path / "annotations")}
    config = config_for(files, tiny_model, shard_size=2, batch_size=2)
    killed: dict = {}

    def kill_after_first_shard():
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            shards = [name for name in os.listdir(config.output)
                      if name.startswith("part-")] if os.path.isdir(config.output) else []
            pids = _engine_worker_pids()
            if shards and pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.update(pid=pids[0], shards_at_kill=len(shards))
            time.sleep(0.05)

    thread = threading.Thread(target=kill_after_first_shard, daemon=True)
    thread.start()
    summary = annotate(config)
    thread.join(timeout=1)
    assert killed, "the engine worker was never seen"
    assert killed["shards_at_kill"] < n_items // 2  # killed mid-run, not after the end
    assert len(summary.shards_written) == n_items // 2
    check_output(config.output, [f"item-{i}" for i in range(n_items)], (2, 3, 2))


def test_replay_engine_writes_annotations(toy_files, tmp_path):
    runs = [{"id": f"item-{i}", "annotator": name, "order": order, "verdict": verdict}
            for i in range(12) for name, verdict in (("judge-1", "a"), ("judge-2", "b"))
            for order in ("ab", "ba")]
    runs_path = write_jsonl(tmp_path / "runs.jsonl", runs)
    config = AnnotateConfig(input=toy_files["input"], output=toy_files["output"], pool="",
                            engine="replay", judge_name="panel", engine_options={"runs": runs_path})
    summary = annotate(config)
    table = check_output(config.output, [f"item-{i}" for i in range(12)], (2, 1, 2))
    assert summary.shards_written == [0]
    assert table.column("conf_simulated").to_pylist() == [0.5] * 12  # one vote each way


@pytest.mark.slow
def test_a_stop_keeps_the_runs_judged_so_far(ray_local, tmp_path, tiny_model, monkeypatch):
    """Results are persisted as they come (``_partial/``): a run stopped half-way through its
    only shard is resumed by judging the other half, not the whole shard again."""
    files = {"input": write_jsonl(tmp_path / "items.jsonl", arithmetic_rows("item-", 0, 12)),
             "pool": write_jsonl(tmp_path / "pool.jsonl", arithmetic_rows("pool-", 500, 8)),
             "output": str(tmp_path / "annotations")}
    config = config_for(files, tiny_model, shard_size=12, batch_size=2)
    real_add = job.ResultCollector.add
    stopped: dict = {}

    def add_then_stop(self, batch):
        out = real_add(self, batch)
        if self.received >= self.total // 2:
            stopped.update(received=self.received, total=self.total)
            raise KeyboardInterrupt  # Ctrl-C half-way through the only shard
        return out

    monkeypatch.setattr(job.ResultCollector, "add", add_then_stop)
    with pytest.raises(KeyboardInterrupt):
        annotate(config)
    monkeypatch.setattr(job.ResultCollector, "add", real_add)
    assert not os.path.exists(job.shard_path(config.output, 0))  # the shard was not finished
    rerun = annotate(config)
    runs_per_unit = 12 * len(config.orders)  # a work unit: one prefix group of the shard
    assert rerun.shards_written == [0]
    # judged again: the runs never judged, and at most the batch in hand at the stop
    assert rerun.n_runs <= stopped["total"] - stopped["received"] + runs_per_unit
    assert rerun.n_runs < stopped["total"] * 0.8  # before: the whole shard again (100%)
    check_output(config.output, [f"item-{i}" for i in range(12)], (2, 3, 2))
    assert not os.listdir(os.path.join(config.output, job.PARTIAL_DIR))  # cleared once done


@pytest.mark.slow
def test_no_node_able_to_host_an_engine_actor_is_one_infrastructure_error(ray_local, toy_files,
                                                                          tiny_model):
    from marc_ray.contracts import InfrastructureError

    config = config_for(toy_files, tiny_model, num_gpus_per_worker=1, device="cpu")
    start = time.monotonic()
    with pytest.raises(InfrastructureError) as raised:
        annotate(config, capacity_timeout_s=3)
    assert time.monotonic() - start < 120  # it waited the timeout, not forever
    message = str(raised.value)
    assert message.startswith("no capacity: no node of the cluster has 1 GPU for an engine actor")
    assert "for 3 s" in message and "rerun to resume" in message and "\n" not in message


def test_infrastructure_failures_are_told_apart_from_engine_errors():
    import ray.exceptions as rex
    from ray.data.exceptions import ExecutionTimeoutError

    lost = rex.ActorUnavailableError("the actor is temporarily unavailable", None)
    wrapped = RuntimeError("dataset execution failed")
    wrapped.__cause__ = lost
    assert job._infrastructure_cause(wrapped) is lost
    assert job._infrastructure_cause(rex.NodeDiedError("node gone")) is not None
    assert job._is_stall(job._infrastructure_cause(ExecutionTimeoutError("stalled")))
    assert job._infrastructure_cause(ValueError("HTTP 401 from the judge")) is None


@pytest.mark.slow
def test_the_capacity_watch_stops_an_execution_no_node_can_host(ray_local):
    watch = job.CapacityWatch({"GPU": 1.0}, timeout_s=2)  # the local cluster has no GPU
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with watch:
            time.sleep(60)  # an execution waiting for an actor that can never be placed
    assert watch.expired and time.monotonic() - start < 30
    with job.CapacityWatch({"CPU": 1.0}, timeout_s=1) as fine:
        time.sleep(3)  # a node can host the actor: nothing is stopped
    assert not fine.expired


def test_the_capacity_watch_stops_an_execution_where_sigint_is_ignored(ray_local):
    # a background job of a script (`marc-ray run ... &`) or a pytest-xdist worker's child
    # starts with SIGINT ignored: the watch's SIGINT must still stop the execution
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        watch = job.CapacityWatch({"GPU": 1.0}, timeout_s=1)  # the local cluster has no GPU
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            with watch:
                time.sleep(60)
        assert watch.expired and time.monotonic() - start < 30
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # as it was
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
def test_the_capacity_watch_stops_an_execution_whose_pool_the_nodes_cannot_host(ray_local,
                                                                                monkeypatch):
    # a cluster shrunk below the running pool: Ray's restart of the lost actor would wait forever
    monkeypatch.setattr(job, "SHRINK_GRACE_S", 1.0)
    hostable = job.hostable_actors({"CPU": 1.0})
    watch = job.CapacityWatch({"CPU": 1.0}, timeout_s=600, pool=hostable + 1)
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with watch:
            time.sleep(60)
    assert watch.shrunk and not watch.expired and time.monotonic() - start < 30
    with job.CapacityWatch({"CPU": 1.0}, timeout_s=600, pool=hostable) as fine:
        time.sleep(3)  # the nodes host the whole pool: nothing is stopped
    assert not fine.shrunk and not fine.expired


OUT_OF_MEMORY_SCRIPT = """
import time
import ray
from marc_ray.annotate import job

ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)

@ray.remote(max_restarts=0)
class EngineBatches:  # the name of the engine actors' class: the watch looks for it
    def judge(self):
        time.sleep(120)

actor = EngineBatches.remote()
actor.judge.remote()
watch = job.CapacityWatch({"CPU": 1.0}, timeout_s=600)
start = time.monotonic()
try:
    with watch:
        time.sleep(120)  # the driver waiting on anything but the dead actor (Ray Data's helper)
    print("not stopped")
except KeyboardInterrupt:
    print(round(time.monotonic() - start), "s:", repr(watch.out_of_memory))
"""


@pytest.mark.slow
def test_the_capacity_watch_stops_an_execution_whose_engine_actor_died_of_memory(ray_tmp):
    # Ray's memory monitor at a 2% threshold kills the engine actor as on a node out of memory.
    # The driver learns of it only when it calls the actor; here it waits on something else, as
    # in the CLI test's race (the monitor also kills Ray Data's helper actor, which the driver
    # waits on): only the watch ends the wait, with the monitor's message
    import subprocess
    import sys

    env = dict(os.environ, RAY_memory_usage_threshold="0.02", RAY_memory_monitor_refresh_ms="100",
               RAY_TMPDIR=str(ray_tmp), RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", OUT_OF_MEMORY_SCRIPT], env=env, text=True,
                          capture_output=True, timeout=300, cwd=ray_tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    seconds, message = done.stdout.strip().splitlines()[-1].split(" s: ", 1)
    assert "running low on memory" in message and int(seconds) < 60, done.stdout


@pytest.mark.slow
def test_a_failed_executions_actors_are_freed_before_the_next_pool_is_sized(ray_local):
    import gc

    import ray

    class Holder:  # defined here: shipped by value (workers cannot import this test module)
        def ready(self) -> bool:
            return True

    demand = {"CPU": 1.0}
    free = job.free_actors(demand)
    holder = ray.remote(num_cpus=1)(Holder).remote()
    assert ray.get(holder.ready.remote())
    assert job.free_actors(demand) == free - 1
    gc.disable()  # as after a failed execution: only a reference cycle (its traceback) holds it
    try:
        cycle = [holder]
        cycle.append(cycle)
        del holder, cycle
        assert job.release_failed_actors(demand, hostable=free, within_s=120) == free
    finally:
        gc.enable()
