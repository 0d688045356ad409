"""`ray job submit --working-dir . -- python jobs/pipeline.py --smoke-test` against a real
`ray start --head` cluster, started here on free ports and stopped afterwards (by its process
group: other Ray clusters on the machine are left alone)."""

from __future__ import annotations

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


def dashboard_missing() -> bool:
    try:
        import aiohttp_cors  # noqa: F401  (ray[default]: the job server runs in the dashboard)
        import opencensus  # noqa: F401
    except ImportError:
        return True
    return not (BIN / "ray").exists()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if dashboard_missing():
        pytest.skip("ray job submission needs ray[default] (the dashboard's job server): "
                    "pip install 'ray[default]==2.60.0'")
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH="")  # the job must find marc_ray through its working dir, not ours
    port, dashboard = free_port(), free_port()
    temp_dir = short_temp_dir("mrjs")  # Ray's socket paths must stay short
    head = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", f"--port={port}",
                             f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
                             *ray_start_ports(head=True),
                             "--num-cpus=2", "--include-dashboard=true", "--disable-usage-stats",
                             f"--temp-dir={temp_dir}"],
                            env=env, cwd=REPO, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 240
        while True:  # the job server answers once the dashboard is up
            probe = subprocess.run([str(BIN / "ray"), "job", "list", f"--address={address}"],
                                   env=env, capture_output=True, text=True, timeout=120)
            if probe.returncode == 0:
                break
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail("ray start --head did not come up:\n" + probe.stderr[-2000:])
            time.sleep(1)
        yield {"address": address, "env": env}
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # ray start --block stops its processes on SIGTERM
        try:
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:  # its graceful stop takes ~30 s; the group is ours alone
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_pipeline_job_runs_on_a_ray_start_cluster(cluster, tmp_path):
    for attempt in range(30):
        result = subprocess.run(
            [str(BIN / "ray"), "job", "submit", f"--address={cluster['address']}", "--working-dir",
             ".", "--runtime-env", "jobs/pipeline.runtime_env.yaml", "--",
             "python", "jobs/pipeline.py", "configs/smoke.yaml", "--out", str(tmp_path / "run")],
            cwd=REPO, env=cluster["env"], capture_output=True, text=True, timeout=500)
        log = result.stdout + result.stderr
        # the job server answers before its agent is registered; nothing was submitted then
        if "No available agent to submit job" not in log:
            break
        time.sleep(2)
    assert result.returncode == 0, log[-4000:]
    assert "succeeded" in log
    assert "[6/6] report    done" in log and "certificate: " in log
    assert "[2/6] annotate SmolLM2-135M-Instruct done" in log
