"""Where outputs and checkpoints live on a cluster: node-local paths, shared mounts, URIs.

A Ray cluster with more than one node needs storage every node can read: an object store URI
(``s3://bucket/path``, ``gs://…``, anything ``pyarrow.fs.FileSystem.from_uri`` resolves) or a
mount shared by every node (NFS, EFS, a Lustre/Filestore volume). Locations themselves (a path
or a URI: :func:`is_uri`, :func:`join`, :func:`resolve`) belong to ``contracts.io``, whose
readers and writers take any of them; this module adds the cluster's view:

* tells a node-local path from a shared one (:func:`is_node_local`; shared mounts are declared
  in ``$MARC_RAY_SHARED_MOUNTS``, a ``os.pathsep``-separated list of folders),
* refuses, on a multi-node cluster, outputs or checkpoints on a node-local path
  (:func:`require_shared`), with an error that says what to use instead,
* and writes a location in logs, manifests and reports without the secrets a URI may carry
  (:func:`redact`).

Credentials never belong in a location: pyarrow reads them from the environment
(``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, ``GOOGLE_APPLICATION_CREDENTIALS``) or the
node's instance role. Query options such as ``endpoint_override`` or ``region`` are allowed.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from .contracts.io import is_uri, join, resolve
from .contracts.redact import redact_url

__all__ = ["SHARED_MOUNTS_ENV", "cluster_nodes", "is_node_local", "is_uri", "join", "redact",
           "require_shared", "resolve", "shared_mounts"]
SHARED_MOUNTS_ENV = "MARC_RAY_SHARED_MOUNTS"


def shared_mounts() -> list[str]:
    """The folders ``$MARC_RAY_SHARED_MOUNTS`` declares shared by every node (absolute)."""
    value = os.environ.get(SHARED_MOUNTS_ENV, "")
    return [os.path.abspath(p) for p in value.split(os.pathsep) if p.strip()]


def is_node_local(location: str) -> bool:
    """True for a plain path (or ``file://`` URI) outside every declared shared mount."""
    location = str(location)
    if is_uri(location):
        split = urlsplit(location)
        if split.scheme != "file":
            return False  # an object store or another remote filesystem
        location = split.path
    path = os.path.abspath(os.path.expanduser(location))
    return not any(path == mount or path.startswith(mount.rstrip(os.sep) + os.sep)
                   for mount in shared_mounts())


def require_shared(locations: dict[str, str | None], n_nodes: int) -> None:
    """Refuse node-local outputs or checkpoints when the cluster has more than one node.

    Parameters
    ----------
    locations : dict
        What each location is for (e.g. ``"run_dir"``, ``"fit.storage_path"``) → location;
        ``None`` entries are skipped.
    n_nodes : int
        Alive nodes of the cluster (``len([n for n in ray.nodes() if n["Alive"]])``).

    Raises
    ------
    ValueError
        Naming each node-local location and what to use instead.
    """
    if n_nodes <= 1:
        return
    local = {name: loc for name, loc in locations.items() if loc is not None
             and is_node_local(loc)}
    if local:
        listed = ", ".join(f"{name}={redact(loc)!r}" for name, loc in local.items())
        raise ValueError(
            f"this Ray cluster has {n_nodes} nodes, but {listed} is a node-local path: each "
            f"node would write (and later look for) its own copy. Use storage every node "
            f"reads: an object store URI (s3://bucket/path, gs://bucket/path) or a mount "
            f"shared by every node, declared in ${SHARED_MOUNTS_ENV} "
            f"(e.g. {SHARED_MOUNTS_ENV}=/mnt/shared)")


def cluster_nodes() -> int:
    """Alive nodes of the connected Ray cluster (1 when Ray is not initialised)."""
    import ray

    if not ray.is_initialized():
        return 1
    return sum(1 for node in ray.nodes() if node.get("Alive"))


def redact(location: str) -> str:
    """The location with its user info and secret query options redacted (for logs)."""
    location = str(location)
    return redact_url(location) if is_uri(location) else location

