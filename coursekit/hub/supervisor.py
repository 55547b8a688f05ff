"""Run ``jupyterhub`` as a child and leave none of its processes behind when it stops.

JupyterHub's shutdown stops the proxy and each user's server, but not everything a server
started: a kernel runs in a session of its own (``jupyter_client`` starts it with
``start_new_session``), so a kernel started while its server was shutting down, or whose
server was killed after the spawner's interrupt and terminate timeouts, outlives the hub as
an orphan of the machine's init, still running as the student.

:func:`supervise` makes this process a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``,
Linux): every process the hub's tree orphans is handed to it instead of to init. It starts
the command in a process group of its own, forwards Ctrl-C (``SIGINT``), ``SIGTERM`` and
``SIGHUP`` (as ``SIGTERM``, which JupyterHub cleans up on) to the command's process alone (not its group), each time one arrives, reaps the orphans it adopts while the hub runs, and when the hub
has exited stops whatever of its tree is left (``SIGTERM``, then ``SIGKILL`` after a grace
period), naming each in one line.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

#: ``prctl`` options, from ``<linux/prctl.h>``.
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: seconds a left-over process gets between ``SIGTERM`` and ``SIGKILL``.
GRACE_S = 10.0


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl({option}, {value}) failed: {os.strerror(error)}")


def become_subreaper() -> None:
    """Make this process the parent of every process its descendants orphan (Linux only).

    Raises:
        OSError: the kernel refused (not Linux, or a kernel older than 3.4).
    """
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _parents() -> dict[int, int]:
    """Each running process's parent's id, read from ``/proc``."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # the command name in parentheses may itself hold spaces and parentheses
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # the process ended while we were reading
            continue
    return parents


def descendants(pid: int) -> set[int]:
    """The processes started by ``pid``, by them, and so on (zombies included).

    Example:
        >>> child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        >>> child.pid in descendants(os.getpid())
        True
        >>> child.kill(); child.wait()
        -9
    """
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:160] or "?"


def _reap_adopted() -> None:
    """Collect the exit status of every child that has ended, so no zombie is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop_leftovers(grace_s: float = GRACE_S, say: Callable[[str], None] = print) -> list[int]:
    """Stop every process still below this one: ``SIGTERM``, then ``SIGKILL`` after ``grace_s`` seconds.

    Processes started while this runs (a server starting a kernel as it dies) are stopped too.
    Needs the right to signal them (root, for other users' processes).

    Args:
        grace_s: seconds between the first ``SIGTERM`` and ``SIGKILL``.
        say: called with one line per process found, naming its id and command line.

    Returns:
        The ids of the processes that were found and stopped, sorted.
    """
    stopped: set[int] = set()
    deadline = time.monotonic() + grace_s
    while True:
        _reap_adopted()
        left = descendants(os.getpid())
        if not left:
            return sorted(stopped)
        final = time.monotonic() >= deadline
        for pid in sorted(left - stopped):
            say(f"stopping process {pid} the hub left behind: {_command_line(pid)}")
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL if final else signal.SIGTERM)
            except ProcessLookupError:
                pass
        stopped |= left
        time.sleep(0.2)


def say_if_possible(line: str) -> None:
    """Print ``line`` on standard error, unless that fails: after a hang-up the terminal is gone (EIO), and a
    failed line must not stop the clean-up that follows it."""
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass


def _die_with_parent() -> None:
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def supervise(command: Sequence[str], grace_s: float = GRACE_S) -> int:
    """Run ``command`` until it exits, forwarding stop signals; then stop what it left. Returns its exit status.

    The command gets a process group of its own, so that Ctrl-C in a terminal reaches it once, through
    this process, and ``SIGTERM`` if this process dies without cleaning up.

    Args:
        command: the program and its arguments (``jupyterhub --config ...``).
        grace_s: seconds a left-over process gets between ``SIGTERM`` and ``SIGKILL``.

    Returns:
        The command's exit status (``-N`` when a signal ``N`` ended it, as ``subprocess`` says).

    Raises:
        OSError: this machine cannot make the process a subreaper (not Linux).
    """
    become_subreaper()
    child = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, process_group=0,
                             preexec_fn=_die_with_parent)
    running = True

    def forward(signum: int, _frame: object) -> None:
        if running:
            try:
                # JupyterHub cleans up on SIGTERM and SIGINT only; a hang-up would kill it with its proxy left
                os.kill(child.pid, signal.SIGTERM if signum == signal.SIGHUP else signum)
            except ProcessLookupError:
                pass

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}
    try:
        while True:
            # os.wait also reaps the orphans adopted as a subreaper while the command runs
            pid, wait_status = os.wait()
            if pid == child.pid:
                running = False
                status = child.returncode = os.waitstatus_to_exitcode(wait_status)
                break
        # a second Ctrl-C must not cut the clean-up short and leave the stragglers running
        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        stop_leftovers(grace_s, say=say_if_possible)
    finally:
        running = False
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return status
