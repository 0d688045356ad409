"""Where outputs and checkpoints live: local paths, shared mounts and filesystem URIs.

A Ray cluster with more than one node needs storage every node can read: an object store URI
(``s3://bucket/path``, ``gs://…``, anything ``pyarrow.fs.FileSystem.from_uri`` resolves) or a
mount shared by every node (NFS, EFS, a Lustre/Filestore volume). This module

* resolves a location to a pyarrow filesystem and a path on it (:func:`resolve`),
* tells a URI from a plain path, and a node-local path from a shared one (:func:`is_uri`,
  :func:`is_node_local`; shared mounts are declared in ``$MARC_RAY_SHARED_MOUNTS``, a
  ``os.pathsep``-separated list of folders),
* refuses, on a multi-node cluster, outputs or checkpoints on a node-local path
  (:func:`require_shared`), with an error that says what to use instead,
* and writes a location in logs, manifests and reports without the secrets a URI may carry
  (:func:`redact`).

Credentials never belong in a location: pyarrow reads them from the environment
(``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, ``GOOGLE_APPLICATION_CREDENTIALS``) or the
node's instance role. Query options such as ``endpoint_override`` or ``region`` are allowed.

Wiring for the pipeline's run folder: ``fs, root = resolve(run_dir)``, then write each file
with ``fs.open_output_stream(join(root, name))`` (or ``pyarrow.parquet.write_table(table,
path, filesystem=fs)``), and call ``require_shared({"run_dir": run_dir}, n_nodes)`` once
after connecting to Ray.
"""

from __future__ import annotations

import os
import posixpath
import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from .contracts.redact import is_secret_name, redact_url

SHARED_MOUNTS_ENV = "MARC_RAY_SHARED_MOUNTS"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(location: str) -> bool:
    """``scheme://…`` (``file://`` included), as opposed to a plain filesystem path."""
    return bool(_URI.match(str(location)))


def resolve(location: str):
    """A location → ``(pyarrow filesystem, path on it)``.

    ``s3://bucket/runs/x?endpoint_override=127.0.0.1:9000&scheme=http`` gives an
    ``S3FileSystem`` and ``bucket/runs/x``; a plain path gives the local filesystem and the
    absolute path.
    """
    import pyarrow.fs as pafs

    location = str(location)
    if not is_uri(location):
        return pafs.LocalFileSystem(), os.path.abspath(location)
    _refuse_secrets(location)
    filesystem, path = pafs.FileSystem.from_uri(location)
    return filesystem, path


def join(base: str, *parts: str) -> str:
    """Join path parts of a location (URI or path) with ``/``, keeping a URI's query."""
    base = str(base)
    if not is_uri(base):
        return os.path.join(base, *parts)
    split = urlsplit(base)
    return urlunsplit(split._replace(path=posixpath.join(split.path or "/", *parts)))


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


def _refuse_secrets(location: str) -> None:
    split = urlsplit(location)
    keys = {k for k, _ in parse_qsl(split.query) if is_secret_name(k)}
    if split.password or keys:
        raise ValueError(f"the location {redact(location)!r} carries credentials "
                         f"({sorted(keys) or ['user:password']}); put them in the environment "
                         f"(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, "
                         f"GOOGLE_APPLICATION_CREDENTIALS) or use the node's role instead")
