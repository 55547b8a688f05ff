"""Let other users run this Python when only its installation lies in a folder they cannot enter.

Every single-user server of ``make hub`` runs the course's virtual environment as its own
user, and so does every student command of ``tests/test_course_pages.py``. A virtual
environment has no copy of the standard library: it runs the interpreter it was made from.
A Python that pyenv built for root lies under ``/root`` (mode 700), which no other user may
enter, so their servers could not even start it.

:func:`python_to_share` decides whether that is the case (and refuses when something else
the users run, the virtual environment or ``coursekit``, is the closed one: that is a
clone in the wrong place, not a Python to share). :meth:`SharedPython.command` then runs a
command in a private mount namespace (``unshare --mount``, propagation private) in which

* the closed folder (``/root``) is an empty ``tmpfs`` of mode 755, holding only the folders
  on the way to the installation (mode 755);
* the installation (``/root/.pyenv/versions/3.11.7``) is bound at its own path, read-only.

Why this is safe: processes outside the namespace see no change (the mounts are private to
it, and vanish with its last process: nothing is left to unmount); inside it, nothing else of
the closed folder is visible, to other users or to root (no keys, histories or caches under
``/root``), and the installation is read-only for everyone, root included. What other users
gain is exactly the right to run that interpreter and read its standard library.
"""

from __future__ import annotations

import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import coursekit

#: run by ``sh -c`` inside the new mount namespace: $1 the installation, $2 the closed folder, then
#: the command. The installation is opened (fd 3) before the tmpfs hides it, and bound from that
#: open folder (``--no-canonicalize``: mount must not turn /proc/self/fd/3 back into a path, which
#: would now name the empty tmpfs). The umask is the caller's again for the command.
_MOUNT_SCRIPT = """set -e
saved_umask=$(umask)
umask 022
exec 3<"$1"
mount -t tmpfs -o mode=755 coursekit-shared-python "$2"
mkdir -p "$1"
mount --no-canonicalize --bind /proc/self/fd/3 "$1"
mount -o remount,bind,ro "$1"
exec 3<&-
umask "$saved_umask"
shift 2
exec "$@"
"""


class ClosedToOthersError(RuntimeError):
    """Other users cannot reach something they must run, and no mount namespace would change that."""


def closed_to_others(path: Path) -> Iterator[tuple[Path, int]]:
    """The folders on the way to ``path`` that other users cannot enter (no ``o+x``), and ``path`` itself if
    they cannot read it (no ``o+r``: Python lists a folder on ``sys.path`` to import from it), each with the
    permission bits others lack there, outermost first. Lazy: a folder is looked at only when it is reached.

    Example:
        >>> dict(closed_to_others(Path("/usr/bin")))
        {}
    """
    path = path.resolve()
    for folder in (*reversed(path.parents), path):
        missing = (stat.S_IXOTH | (stat.S_IROTH if folder == path else 0)) & ~folder.stat().st_mode
        if missing:
            yield folder, missing


def first_closed_to_others(path: Path) -> Path | None:
    """The first folder on the way to ``path`` (or ``path`` itself) that other users cannot enter or read.

    Example:
        >>> first_closed_to_others(Path("/usr/bin")) is None
        True
    """
    return next((folder for folder, _ in closed_to_others(path)), None)


@dataclass(frozen=True)
class SharedPython:
    """A Python installation to open to other users, inside the folder ``closed`` they cannot enter.

    Attributes:
        installation: the interpreter's installation (``sys.base_prefix``), resolved.
        closed: the folder other users cannot enter, an ancestor of ``installation``.
    """

    installation: Path
    closed: Path

    def command(self, command: Sequence[str]) -> list[str]:
        """``command``, run in a private mount namespace where other users can run this Python.

        Needs root (``unshare --mount`` and ``mount``). The command keeps the caller's process
        id, process group and umask: ``unshare`` and ``sh`` each replace themselves.

        Example:
            >>> SharedPython(Path("/root/py"), Path("/root")).command(["id"])[:5]
            ['unshare', '--mount', '--propagation', 'private', '--']
        """
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _MOUNT_SCRIPT, "sh",
                str(self.installation), str(self.closed), *command]

    def describe(self) -> str:
        """One line saying what :meth:`command` does and why.

        Example:
            >>> SharedPython(Path("/root/py"), Path("/root")).describe()[:36]
            'Python /root/py is under /root, whic'
        """
        return (f"Python {self.installation} is under {self.closed}, which other users cannot enter: running in a "
                f"private mount namespace where {self.closed} holds only that installation, read-only")


def python_to_share(installation: Path, interpreter: Path, environment: Sequence[Path]) -> SharedPython | None:
    """Whether other users need a :class:`SharedPython` to run ``interpreter`` with ``environment``.

    Args:
        installation: the base interpreter's installation (``sys.base_prefix``).
        interpreter: the interpreter users start (``sys.executable``, a link into ``installation``).
        environment: everything else users run or read: the virtual environment, ``coursekit``.

    Returns:
        None when every user can already reach all of it; a :class:`SharedPython` when the
        only obstacle is a folder above ``installation`` that other users cannot enter.

    Raises:
        ClosedToOthersError: a path in ``environment`` is closed to other users (clone the
            repository elsewhere), or the installation is closed in a way no mount opens (the
            installation itself or a folder inside it, or an interpreter outside it).

    Example:
        >>> python_to_share(Path("/usr"), Path("/usr/bin/env"), [Path("/usr/lib")]) is None
        True
    """
    for path in environment:
        closed = first_closed_to_others(path)
        if closed is not None:
            raise ClosedToOthersError(
                f"every user's server runs {path}, but other users cannot enter or read {closed}: put the repository "
                "and its .venv where every user can read them (e.g. a clone under /opt or /srv)")
    installation = installation.resolve()
    interpreter = interpreter.resolve()
    closed = first_closed_to_others(installation) or first_closed_to_others(interpreter)
    if closed is None:
        return None
    if not interpreter.is_relative_to(installation) or not installation.is_relative_to(closed) \
            or closed == installation:
        raise ClosedToOthersError(
            f"every user's server runs {interpreter} (installed in {installation}), but other users cannot enter or "
            f"read {closed}: make .venv from a Python every user can run (`make venv PYTHON=...`)")
    return SharedPython(installation=installation, closed=closed)


def this_python_to_share() -> SharedPython | None:
    """:func:`python_to_share` for the running Python, its virtual environment and ``coursekit``.

    Example:
        >>> isinstance(this_python_to_share(), (SharedPython, type(None)))
        True
    """
    return python_to_share(Path(sys.base_prefix), Path(sys.executable),
                           (Path(sys.prefix), Path(coursekit.__file__).parent))
