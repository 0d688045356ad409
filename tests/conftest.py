"""Shared fixtures: one local Ray cluster per test session, the shared data folder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localhost import free_port, short_temp_dir  # noqa: F401  (free_port: for the tests)

# pytest-xdist's workers ignore SIGINT, and the processes they start inherit that: a test that
# stops `marc-ray run` with Ctrl-C's SIGINT would then wait forever. A Python handler is reset
# to the default by exec, so the processes the tests start take SIGINT as a terminal gives it.
signal.signal(signal.SIGINT, signal.default_int_handler)
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local test clusters need no token
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
MOTO = Path(sys.executable).parent / "moto_server"
S3_KEY, S3_SECRET = "AKIAMARCRAYTEST", "marc-ray-test-secret-never-logged"
SHARED_DATA = REPO.parent / "shared" / "data"


# The files that take a minute or more, longest first (CI durations). The suite runs on parallel
# workers, one file to a worker at a time (pytest-xdist, `--dist loadfile` in pyproject.toml);
# a long file handed out last would keep one worker busy while the others sit idle, so these
# are handed out first and the short files fill the gaps.
SLOW_FILES = (
    "test_readme.py", "multinode/test_node_loss.py", "pipeline/test_pipeline_e2e.py",
    "test_failures.py", "annotate/test_job.py", "annotate/test_vllm_engine.py",
    "pipeline/test_jobs.py", "test_scale_guard.py", "multinode/test_job_submit_multinode.py",
    "annotate/test_http_engine.py", "multinode/test_node_loss_fit.py",
    "pipeline/test_job_submit.py", "multinode/test_placement.py",
    "pipeline/test_pipeline_cascade.py", "fit/test_train_ray_data.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: position for position, name in enumerate(SLOW_FILES)}
    tests = Path(__file__).resolve().parent

    def slowness(item) -> int:
        return rank.get(Path(item.fspath).resolve().relative_to(tests).as_posix(), len(rank))

    items.sort(key=slowness)  # a stable sort: the tests of a file, and the other files, keep order


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (tests read the real datasets there, never copy them)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray cluster shared by every test that needs one (started once: ~5 s).

    tests/multinode swaps it for a multi-node cluster while its tests run and starts the same
    local cluster again afterwards, so the tests after that folder still find one here.
    """
    import ray

    if not ray.is_initialized():
        # address="local": always a cluster of our own, never one another process started
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True)
    yield ray
    ray.shutdown()


@pytest.fixture
def ray_tmp():
    """A short RAY_TMPDIR of this test's own (Ray's socket paths must stay under 107 bytes)."""
    import shutil

    folder = short_temp_dir("mrt")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def stop_process(process: subprocess.Popen, timeout_s: float) -> None:
    """Terminate a server this test session started (by its own handle), killing it if it lingers."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on a free localhost port, stopped by its process id."""
    if not MOTO.exists():
        pytest.skip("moto_server not installed: pip install 'moto[server]' (the test extra)")
    port = free_port()
    server = subprocess.Popen([str(MOTO), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("moto_server did not start")
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(server, 10)


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Credentials in the environment only (as on a real node); the URI query for the server."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return f"endpoint_override={s3_server}&scheme=http&region=us-east-1&allow_bucket_creation=true"
