"""Leases on the dedicated uids that sandboxes run as, one per concurrent run.

A submission's kernel runs as a uid that nothing else on the machine uses, so
that ``RLIMIT_NPROC`` counts only its processes, ``kill(-1)`` reaches only
them, and no file outside its scratch space belongs to it. Leases are
``flock`` locks on files in :data:`UID_LOCK_DIR`, so concurrent graders
(threads or processes) never share a uid, and a crashed grader's leases are
freed by the kernel with its file descriptors.

Only a root grader leases uids (one that is not root runs the kernel as
itself), so the lock files live where only root can create them, and every
lease checks that the folder is still root's alone (:func:`open_lock_directory`).
A folder another user made or can open (it was once in ``/tmp``: grader review
r11, F6) would let them hold every lease and stop all grading, swap a locked
file for a fresh one so that two sandboxes share a uid (and one's release kills
the other's kernel), or plant symlinks through which root creates files anywhere.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import stat
import threading
from pathlib import Path

UID_BASE = 61000
UID_COUNT = 1000
#: the uid a kernel started as root runs as when it has no lease: student code never runs as root.
NOBODY_UID = 65534
#: the leases' lock files: under ``/run``, which only root can write (a tmpfs, emptied at boot).
UID_LOCK_DIR = Path("/run/coursekit-grade-uids")
#: the folder's mode: no access for group or others, as anyone else who could open a lock file could hold its
#: lease (``flock`` needs no more than a read-only descriptor).
LOCK_DIR_MODE = 0o700
#: spreads the first uid tried over the range, so concurrent graders rarely contend.
_SPREAD = 7919


class LockDirectoryError(RuntimeError):
    """The folder of the uid leases, or a lock file in it, is not one that only this grader's user controls."""


def kernel_uid(leased: int | None) -> int | None:
    """The uid the kernel runs as: the ``leased`` one, else :data:`NOBODY_UID` when this process is root.

    A root grader gets no lease only without bubblewrap and with a Python
    environment that other uids cannot read (the grader refuses to start
    then); this is the last line if it runs anyway. ``None``: stay as is (a
    grader that is not root runs the kernel as itself).

    Example:
        >>> kernel_uid(61000)
        61000
    """
    if leased is not None:
        return leased
    return NOBODY_UID if os.getuid() == 0 else None


def _refusal(path: Path, found: str) -> LockDirectoryError:
    return LockDirectoryError(
        f"refusing to lease sandbox uids: {path} is {found}; expected a real directory (not a symlink) owned by "
        f"uid {os.geteuid()} (this grader) with mode {LOCK_DIR_MODE:04o} (no access for group or others). "
        "Another user may have made it to take over the leases: remove it, and the grader makes a new one")


def _found(path: Path) -> str:
    """What is at ``path``, in words, for a refusal."""
    try:
        info = os.lstat(path)
    except OSError as error:
        return f"unreadable ({error.strerror})"
    if stat.S_ISLNK(info.st_mode):
        return f"a symlink to {os.readlink(path)!r}"
    if not stat.S_ISDIR(info.st_mode):
        return "not a directory"
    return "a directory this grader cannot open"


def open_lock_directory(path: Path = UID_LOCK_DIR) -> int:
    """A descriptor of the folder of the uid leases, made (mode 0700) if it is missing, once it is safe.

    Safe: a real directory, not a symlink, owned by the effective uid, with
    no permission for group or others. The checks read the opened descriptor,
    and the lock files are opened relative to it, so renaming or replacing
    the path afterwards changes nothing.

    Args:
        path: the folder; tests pass a temporary one.

    Returns:
        An open descriptor of the folder (``O_CLOEXEC``); the caller closes it.

    Raises:
        LockDirectoryError: the folder cannot be made, or is not safe; the message names the path, what is
            there and what was expected.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as parent:
        ...     folder = open_lock_directory(Path(parent) / "leases")
        ...     oct(stat.S_IMODE(os.fstat(folder).st_mode))
        ...     os.close(folder)
        '0o700'
    """
    try:
        os.mkdir(path, LOCK_DIR_MODE)
    except FileExistsError:
        pass
    except OSError as error:
        raise LockDirectoryError(f"cannot make {path} for the sandbox uid leases: {error.strerror}") from None
    try:
        folder = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        raise _refusal(path, _found(path)) from None
    info = os.fstat(folder)
    found = None
    if info.st_uid != os.geteuid():
        found = f"a directory owned by uid {info.st_uid}"
    elif info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        found = f"a directory of mode {stat.S_IMODE(info.st_mode):04o}"
    if found is not None:
        os.close(folder)
        raise _refusal(path, found)
    return folder


def _open_lock_file(folder: int, path: Path, uid: int) -> int:
    """A descriptor of ``uid``'s lock file in ``folder`` (made if missing); a symlink there is refused, not followed."""
    name = f"{uid}.lock"
    try:
        handle = os.open(name, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder)
    except OSError as error:
        found = "a symlink" if error.errno == errno.ELOOP else f"unopenable ({error.strerror})"
        raise LockDirectoryError(f"refusing to lease sandbox uids: the lock file {path / name} is {found}; "
                                 "expected a regular file, which only the grader makes: remove it") from None
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise LockDirectoryError(f"refusing to lease sandbox uids: the lock file {path / name} is not a regular "
                                 "file, as expected: remove it")
    return handle


class UidLease:
    """An exclusive lease on one sandbox uid (see the module docstring).

    Args:
        lock_dir: the folder of the lock files (tests pass a temporary one; see :func:`open_lock_directory`).

    Raises:
        RuntimeError: every uid of the range is leased.
        LockDirectoryError: the folder, or a lock file in it, is not safe (see :func:`open_lock_directory`).
    """

    def __init__(self, lock_dir: Path = UID_LOCK_DIR) -> None:
        folder = open_lock_directory(lock_dir)
        try:
            start = (os.getpid() * _SPREAD + threading.get_ident()) % UID_COUNT
            for step in range(UID_COUNT):
                uid = UID_BASE + (start + step) % UID_COUNT
                handle = _open_lock_file(folder, lock_dir, uid)
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(handle)
                    continue
                self.uid, self._handle = uid, handle
                return
        finally:
            os.close(folder)
        raise RuntimeError("no free sandbox uid: too many concurrent grading runs")

    def release(self) -> None:
        """Kill whatever still runs as the uid, then free it."""
        kill_uid(self.uid)
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        os.close(self._handle)


def kill_uid(uid: int) -> None:
    """SIGKILL every process running as ``uid`` (needed only when there is no PID namespace)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid == uid:
                os.kill(int(entry), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue
