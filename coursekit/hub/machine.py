"""What ``python -m coursekit.hub`` checks on this machine before it starts: ports and permissions."""

from __future__ import annotations

import socket
import stat
from pathlib import Path


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Example:
        >>> 1024 <= free_loopback_port() < 65536
        True
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_in_use(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:``port``."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def first_closed_to_others(path: Path) -> Path | None:
    """The first folder on the way to ``path`` (or ``path`` itself) that other users cannot enter or read.

    Every user's server runs the course's virtual environment and imports ``coursekit`` from it,
    so both must be readable by all.

    Example:
        >>> first_closed_to_others(Path("/usr/bin")) is None
        True
    """
    path = path.resolve()
    for folder in (*reversed(path.parents), path):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH or (folder == path and not mode & stat.S_IROTH):
            return folder
    return None
