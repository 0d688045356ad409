"""Free ports and short folders for the servers and Ray nodes the tests start on this machine.

The suite runs on parallel workers (pytest-xdist), each with Ray clusters of its own, so no
test may rely on a default port: another worker's cluster may hold it.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_start_ports(head: bool) -> list[str]:
    """`ray start` flags for every port a node binds, each a free one. Ray's defaults (the Ray
    client server's 10001, the agents' ports) are taken by whichever cluster started first."""
    flags = [f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
             f"--dashboard-agent-listen-port={free_port()}",
             f"--dashboard-agent-grpc-port={free_port()}",
             f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"]
    return flags + ([f"--ray-client-server-port={free_port()}"] if head else [])


def short_temp_dir(prefix: str) -> Path:
    """A new folder directly under /tmp. Ray puts its sockets in the session folder under its
    temp dir, and a socket path must stay under 107 bytes: pytest's own folders (with
    pytest-xdist's ``popen-gwN``) are too deep. The caller removes it."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
