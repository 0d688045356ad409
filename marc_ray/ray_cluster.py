"""Joining Ray: the one place a stage connects to a cluster or starts a local one.

Below the pipeline and ``apply`` (both call it), and above nothing but Ray itself, so that a
stage's adapter never has to import the orchestrator to get a cluster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .contracts.validation import check_number, fail

CAPACITY_TIMEOUT_S = 300.0  # longest wait for a node able to host the work (ray.capacity_timeout_s)


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` / $RAY_ADDRESS, or start an embedded local cluster (once).

    Parameters
    ----------
    address : str, optional
        A running cluster (``ray.address`` of the configuration); None: $RAY_ADDRESS if set,
        else a private local cluster.
    num_cpus : int, optional
        Local cluster only: the CPUs it may use (None: all).
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local cluster needs no token
        # address="local": always a new embedded cluster, never one that `ray start` left running
        # on this machine (ray.init() without an address would join the latest such cluster)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


@dataclass
class RayConfig:
    """Where a job runs (the pipeline's ``ray:`` section)."""

    address: str | None = None  # None: $RAY_ADDRESS if set, else an embedded local cluster
    num_cpus: int | None = None  # local cluster only: CPUs it may use (None: all)
    capacity_timeout_s: float = CAPACITY_TIMEOUT_S  # no node can host the work (lost nodes,
                               # too small a cluster) or nothing moves this long: exit 5, not a hang

    def validate(self, source: str = "") -> "RayConfig":
        if self.address is not None and not isinstance(self.address, str):
            fail("ray.address", "a string such as 'auto' or 'ray://host:10001'", self.address, source)
        if self.num_cpus is not None:
            check_number("ray.num_cpus", self.num_cpus, source, low=1, integer=True,
                         what="an integer >= 1 (or leave it out for all CPUs)")
        check_number("ray.capacity_timeout_s", self.capacity_timeout_s, source, low=1,
                     what="a number of seconds >= 1")
        return self

    def join(self) -> None:
        """``ensure_ray`` with this section's address and CPUs."""
        ensure_ray(self.address, self.num_cpus)
