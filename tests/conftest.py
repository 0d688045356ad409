"""Shared fixtures: one local Ray cluster per test session, the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local test clusters need no token
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


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
