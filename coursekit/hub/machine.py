"""What ``python -m coursekit.hub`` checks on this machine before it starts: ports and permissions."""

from __future__ import annotations

import socket
import stat
import sys
from pathlib import Path

import coursekit


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


def runtime_closed_to_others() -> str | None:
    """Why other users could not run this Python environment, or None when they can.

    Every user's server runs the course's virtual environment: its folder, the interpreter it
    links to and that interpreter's standard library (a virtual environment has no copy of it),
    and ``coursekit``. A Python built under ``/root`` (pyenv's default for root) fails here.

    Example:
        >>> runtime_closed_to_others() is None or "cannot enter or read" in runtime_closed_to_others()
        True
    """
    needed = (Path(sys.prefix), Path(sys.executable).resolve(), Path(sys.base_prefix), Path(coursekit.__file__).parent)
    for path in needed:
        closed = first_closed_to_others(path)
        if closed is not None:
            return (f"every user's server runs {path}, but other users cannot enter or read {closed}: put the "
                    "repository, and the Python its .venv is made from, where every user can read them (e.g. a clone "
                    "under /opt or /srv, with `make venv PYTHON=<a Python 3.11 installed outside /root>`)")
    return None
