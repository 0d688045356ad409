"""`ray job submit` to the head of a two-node `ray start` cluster runs the whole pipeline, with
its outputs where the command says (--out). Both raylets are started here on free ports and
stopped by their own process groups; other Ray clusters on the machine are left alone."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localhost import free_port, ray_start_ports, short_temp_dir

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow
TIME_LIMIT_S = 900  # two raylets, the dashboard's job server and the smoke pipeline


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)  # `ray start --block` stops its processes on SIGTERM
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:  # the group is ours alone
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def two_node_cluster(tmp_path_factory):
    try:
        import aiohttp_cors  # noqa: F401  (ray[default]: the job server runs in the dashboard)
    except ImportError:
        pytest.skip("ray job submission needs ray[default]")
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH="", MARC_RAY_SHARED_MOUNTS=str(tmp_path_factory.getbasetemp()))
    port, dashboard = free_port(), free_port()
    temp_dir = short_temp_dir("mrjm")  # Ray's socket paths must stay short
    worker_temp_dir = short_temp_dir("mrjw")
    started = []
    try:
        started.append(subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}",
             f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1", *ray_start_ports(head=True),
             "--num-cpus=1", "--include-dashboard=true", "--disable-usage-stats",
             f"--temp-dir={temp_dir}"], env=env, cwd=REPO, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        address = f"http://127.0.0.1:{dashboard}"
        deadline = time.monotonic() + 420  # the head and its job server starting (under load)
        while subprocess.run([str(BIN / "ray"), "job", "list", f"--address={address}"], env=env,
                             capture_output=True, timeout=120).returncode != 0:
            if started[0].poll() is not None or time.monotonic() > deadline:
                pytest.fail("ray start --head did not come up")
            time.sleep(1)
        started.append(subprocess.Popen(
            [str(BIN / "ray"), "start", "--block", f"--address=127.0.0.1:{port}", *ray_start_ports(head=False),
             "--num-cpus=1", "--disable-usage-stats",
             # its own folder: two raylets unpacking the job's working dir into one folder race
             f"--temp-dir={worker_temp_dir}"], env=env, cwd=REPO,
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield {"address": address, "env": env, "gcs": f"127.0.0.1:{port}"}
    finally:
        for process in reversed(started):
            stop(process)
        for folder in (temp_dir, worker_temp_dir):
            shutil.rmtree(folder, ignore_errors=True)


def alive_nodes(cluster) -> int:
    probe = subprocess.run(
        [sys.executable, "-c", "import ray; ray.init(address='%s', log_to_driver=False); "
         "print(sum(n['Alive'] for n in ray.nodes()))" % cluster["gcs"]],
        env=cluster["env"], capture_output=True, text=True, timeout=120)
    return int(probe.stdout.strip().splitlines()[-1]) if probe.returncode == 0 else 0


def test_job_submit_runs_the_pipeline_on_two_nodes(two_node_cluster, tmp_path):
    deadline = time.monotonic() + 300  # a raylet joining: a cluster event, slow under load
    while alive_nodes(two_node_cluster) < 2:
        assert time.monotonic() < deadline, "the second raylet never joined"
        time.sleep(2)
    out = tmp_path / "run"
    for _ in range(30):
        result = subprocess.run(
            [str(BIN / "ray"), "job", "submit", f"--address={two_node_cluster['address']}",
             "--working-dir", ".", "--runtime-env", "jobs/pipeline.runtime_env.yaml", "--",
             "python", "jobs/pipeline.py", "configs/smoke.yaml", "--out", str(out)],
            cwd=REPO, env=two_node_cluster["env"], capture_output=True, text=True, timeout=500)
        log = result.stdout + result.stderr
        if "No available agent to submit job" not in log:  # the agent registers after the server
            break
        time.sleep(2)
    assert result.returncode == 0, log[-4000:]
    assert "[6/6] report    done" in log
    reports = list(out.rglob("report*"))
    assert reports, f"no report under {out}: {sorted(p.name for p in out.rglob('*'))}"
    assert list((out / "annotate").rglob("part-*.parquet"))  # the annotations, where --out says
    manifests = [json.loads(p.read_text()) for p in out.rglob("*.json") if p.stat().st_size < 1e6]
    assert manifests
