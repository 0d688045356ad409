"""Joining Ray: the one place a stage connects to a cluster or starts a local one.

Below the pipeline and ``apply`` (both call it), and above nothing but Ray itself, so that a
stage's adapter never has to import the orchestrator to get a cluster.
"""

from __future__ import annotations

import os


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
