"""Leases on the dedicated uids that sandboxes run as, one per concurrent run.

A submission's kernel runs as a uid that nothing else on the machine uses, so
that ``RLIMIT_NPROC`` counts only its processes, ``kill(-1)`` reaches only
them, and no file outside its scratch space belongs to it. Leases are
``flock`` locks on files in :data:`UID_LOCK_DIR`, so concurrent graders
(threads or processes) never share a uid, and a crashed grader's leases are
freed by the kernel with its file descriptors.
"""

from __future__ import annotations

import fcntl
import os
import signal
import tempfile
import threading
from pathlib import Path

UID_BASE = 61000
UID_COUNT = 1000
#: the uid a kernel started as root runs as when it has no lease: student code never runs as root.
NOBODY_UID = 65534
UID_LOCK_DIR = Path(tempfile.gettempdir()) / "coursekit-grade-uids"
#: spreads the first uid tried over the range, so concurrent graders rarely contend.
_SPREAD = 7919


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


class UidLease:
    """An exclusive lease on one sandbox uid (see the module docstring).

    Raises:
        RuntimeError: every uid of the range is leased.
    """

    def __init__(self) -> None:
        UID_LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
        start = (os.getpid() * _SPREAD + threading.get_ident()) % UID_COUNT
        for step in range(UID_COUNT):
            uid = UID_BASE + (start + step) % UID_COUNT
            handle = open(UID_LOCK_DIR / f"{uid}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            self.uid, self._handle = uid, handle
            return
        raise RuntimeError("no free sandbox uid: too many concurrent grading runs")

    def release(self) -> None:
        """Kill whatever still runs as the uid, then free it."""
        kill_uid(self.uid)
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()


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
