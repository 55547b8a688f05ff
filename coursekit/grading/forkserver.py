"""A fork server that imports torch once and starts each sandbox's runner from that import.

Started as ``python -I forkserver.py`` (:class:`ForkServer`), it spares every
submission's runner the ~1.4 s of CPU that ``import torch`` takes, which was
most of what grading one submission cost. It never sees a submission: the
grader starts the sandbox with bubblewrap as before
(:mod:`~coursekit.grading.bwrap`: the same namespaces, mounts, seccomp filter
and cgroups), but the command inside is a placeholder, :data:`HOLDER_SOURCE`,
without capabilities, that only says it is ready and waits. The grader then
asks the server for a runner in that sandbox, handing it the runner's three
pipes, a pipe to report on and a pidfd of the placeholder, and talks to the
runner as it would to one bubblewrap had started.

For each request the server forks a **starter**, which stays outside the
sandbox as root: it opens the placeholder's root directory and the
namespaces bubblewrap reported, checks each against the inode number it
reported and then, through a pidfd the grader took when it found the
placeholder, that the placeholder is still alive (so the PID still named it:
a reused PID cannot lead a runner into another sandbox), joins its PID namespace
(:func:`setns` takes effect for children only), forks the **runner**, puts it
in the sandbox's cgroups and lets it go. The runner then does what bubblewrap
does for the command it runs:

1. joins the sandbox's network, IPC, UTS, cgroup and mount namespaces and
   its root directory (``chroot`` to the placeholder's root), and moves to
   the sandbox's home;
2. starts a session of its own and dies with the starter;
3. keeps only its three pipes open;
4. keeps only the capabilities the grader asked for (bounding, ambient,
   effective, permitted and inheritable sets), sets ``no_new_privs`` and
   loads the same seccomp program;
5. runs ``runner.py`` from the sandbox's view of ``coursekit`` as
   ``__main__``, as ``python -I runner.py`` would.

The starter tells the grader on the status pipe when the runner is in the
sandbox (or why it never got there: the grader then has bubblewrap start the
runner), and how it ended. When the grader kills the sandbox, the PID
namespace's init dies and the kernel kills the runner with it. The runner dies
with its starter too, as an exec'd runner died with bubblewrap's own process:
a host whose OOM killer picks either loses that attempt.

Nothing of ``coursekit`` may be imported in the server (its memory is every
runner's): the module's top imports the standard library only, the server
imports torch and NumPy and refuses to serve when ``coursekit`` is loaded, and
the runner imports ``coursekit`` afresh from the sandbox's view. The
server's random states are every runner's too: Python's :mod:`random` reseeds
itself at every fork, and the runner reseeds NumPy's global generator from the
operating system. Its string hashes'
seed cannot change after start: every runner of one grader process shares the
server's, where an exec'd runner drew its own (``-I`` ignores
``PYTHONHASHSEED``). What the kernel can reach of the server's state (its
module, the request: host PIDs and cgroup paths) holds nothing secret. The
pages a forked runner and kernel share with the server (torch's and NumPy's
import) stay charged to the server's memory cgroup until they are written, so
a sandbox's memory cgroup leaves a forked kernel more room than an exec'd one;
the address-space limit, which the runner sets from what the kernel starts
with, is the same under both starts.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import importlib
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import Any, NoReturn

#: what the placeholder runs (``python -I -S -c``): say it is ready, then wait until the grader closes its stdin.
HOLDER_SOURCE = "import os\nos.write(1, b'.')\nos.read(0, 1)"
#: the namespaces the runner joins, in order (the mount namespace last: it changes the root the others' files are in),
#: with their ``CLONE_NEW*`` flags; the PID namespace is joined by the starter.
JOINED_NAMESPACES = (("net", 0x40000000), ("ipc", 0x08000000), ("uts", 0x04000000), ("cgroup", 0x02000000),
                     ("mnt", 0x00020000))
CLONE_NEWPID = 0x20000000
#: the namespaces bubblewrap always makes here (``--unshare-cgroup-try`` may make no cgroup namespace).
REQUIRED_NAMESPACES = ("pid", "mnt", "net", "ipc", "uts")
#: the descriptors a request carries, in order.
REQUEST_FDS = ("stdin", "stdout", "stderr", "status", "placeholder")
#: the largest request, in bytes (a request names a few paths and a seccomp program of a hundred bytes).
MAX_REQUEST_BYTES = 1 << 16
#: how many starts in a row may go unanswered before the server is stopped (and the next start starts another).
MAX_SILENT_STARTS = 3
#: the shortest wait for the server to take a request, in seconds (a start past its deadline still fails cleanly).
MIN_SEND_TIMEOUT_S = 0.001
#: how long the grader waits for the server to exit once it closed its socket, in seconds.
CLOSE_WAIT_S = 5.0
#: the exit status the starter reports when it could not start the runner (as ``join_command``'s shell does).
START_FAILED = 125
PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_LIBC = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _prctl(option: int, *args: int) -> None:
    values = [ctypes.c_ulong(a) for a in args] + [ctypes.c_ulong(0)] * (4 - len(args))
    _check(_LIBC.prctl(ctypes.c_int(option), *values), f"prctl({option})")


def setns(fd: int, nstype: int) -> None:
    """Join the namespace that ``fd`` (an open ``/proc/PID/ns/*`` file) refers to."""
    _check(_LIBC.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns({nstype:#x})")


def keep_capabilities(mask: int, last_capability: int) -> None:
    """Drop every capability not in ``mask`` from all five sets (the bounding set first: that needs CAP_SETPCAP)."""
    for capability in range(last_capability + 1):
        if not mask >> capability & 1:
            _prctl(PR_CAPBSET_DROP, capability)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = _CapHeader(CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for word in (0, 1):
        data[word].effective = data[word].permitted = mask >> (32 * word) & 0xFFFFFFFF
    _check(_LIBC.capset(ctypes.byref(header), data), "capset")


def load_seccomp(program: bytes) -> None:
    """Set ``no_new_privs`` and load the classic-BPF ``program`` (8 bytes per instruction), as bubblewrap does."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    if not program:
        return
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    _check(_LIBC.prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER),
                       ctypes.c_void_p(ctypes.addressof(fprog)), ctypes.c_ulong(0), ctypes.c_ulong(0)),
           "prctl(PR_SET_SECCOMP)")


def _reseed() -> None:
    """Seed NumPy's global generator from the operating system (:mod:`random` reseeds itself at every fork)."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def _enter_sandbox(request: dict[str, Any], stdio: tuple[int, int, int], namespaces: dict[str, int],
                   root: int, go: int, entered: int, last_capability: int) -> None:
    """The runner's side: wait for the cgroups, join the sandbox, keep only stdio and the capabilities asked for.

    Writes ``1`` to ``entered`` and closes it once the runner is in the sandbox with its limits set.
    """
    if os.read(go, 1) != b"1":
        raise OSError("the starter did not let the runner go")
    for name, flag in JOINED_NAMESPACES:
        if name in namespaces:
            setns(namespaces[name], flag)
    os.fchdir(root)
    os.chroot(".")
    os.chdir(request["home"])
    os.environ["PWD"] = request["home"]
    os.setsid()
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
    os.closerange(3, entered)
    os.closerange(entered + 1, os.sysconf("SC_OPEN_MAX"))
    keep_capabilities(int(request["capabilities"]), last_capability)
    load_seccomp(bytes.fromhex(request["seccomp"]))
    _reseed()
    os.write(entered, b"1")
    os.close(entered)


def _run_as_main(path: str) -> NoReturn:
    """Run the script ``path`` as ``__main__`` and exit with the status the interpreter would give.

    (Without the interpreter's shutdown: ``atexit`` handlers and other threads are not waited for. The runner
    ends with ``os._exit`` itself.)
    """
    sys.argv = [path]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    code = 0
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
        if not isinstance(stop.code, int) and stop.code is not None:
            with contextlib.suppress(Exception):
                print(stop.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - reported as an uncaught exception is, with its traceback
        traceback.print_exc()
        code = 1
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _open_namespaces(holder: int, expected: dict[str, int]) -> dict[str, int]:
    """Open the placeholder's namespaces that bubblewrap reported, checking each against the inode it reported.

    A PID that no longer names the placeholder (it died and the number was reused) names a process whose
    namespaces are other ones: refused, so a runner never starts in another sandbox.
    """
    opened: dict[str, int] = {}
    try:
        for name in REQUIRED_NAMESPACES:
            if name not in expected:
                raise OSError(f"bubblewrap did not report the sandbox's {name} namespace")
        unknown = sorted(set(expected) - {name for name, _ in JOINED_NAMESPACES} - {"pid"})
        if unknown:
            raise OSError(f"bubblewrap reported namespaces the runner would not join: {', '.join(unknown)}")
        for name, _ in JOINED_NAMESPACES + (("pid", CLONE_NEWPID),):
            if name not in expected:
                continue  # not made (a kernel without cgroup namespaces, say): the sandbox shares the host's
            opened[name] = os.open(f"/proc/{holder}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
            if os.fstat(opened[name]).st_ino != expected[name]:
                raise OSError(f"process {holder} is not in the sandbox's {name} namespace")
    except BaseException:
        for fd in opened.values():
            os.close(fd)
        raise
    return opened


def _start(request: dict[str, Any], fds: list[int]) -> NoReturn:
    """The starter's side (a child of the server, outside the sandbox): start the runner, report how it went.

    It writes to the status pipe ``started`` once the runner is in the sandbox and ``exit N`` when it has
    ended (:func:`os.waitstatus_to_exitcode`), or ``failed WHY`` when the runner never got there, each on a
    line of its own.
    """
    stdin, stdout, stderr, status, placeholder = fds
    runner = -1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        holder = int(request["holder"])
        root = os.open(f"/proc/{holder}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        namespaces = _open_namespaces(holder, {name: int(inode) for name, inode in request["namespaces"].items()})
        # The pidfd is the placeholder the grader found: alive now, so the PID named it when its files were opened.
        signal.pidfd_send_signal(placeholder, 0)
        os.close(placeholder)
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            last_capability = int(handle.read())
        setns(namespaces["pid"], CLONE_NEWPID)
        go_read, go_write = os.pipe()
        entered_read, entered_write = os.pipe()
        runner = os.fork()
        if runner == 0:
            try:
                for fd in (go_write, entered_read, status):
                    os.close(fd)
                _enter_sandbox(request, (stdin, stdout, stderr), namespaces, root, go_read, entered_write,
                               last_capability)
            except BaseException as error:  # noqa: BLE001 - nothing may unwind into the server's loop
                with contextlib.suppress(OSError):
                    os.write(entered_write, f"E{error!r}"[:1000].encode("utf-8", "replace"))
                os._exit(START_FAILED)
            _run_as_main(request["runner"])
        for fd in (stdin, stdout, stderr, go_read, entered_write, root, *namespaces.values()):
            os.close(fd)
        for procs in request["cgroup_procs"]:
            with open(procs, "w") as handle:
                handle.write(str(runner))
        os.write(go_write, b"1")
        os.close(go_write)
        word = _read_all(entered_read)
        if word == b"1":
            os.write(status, b"started\n")
        _, wait_status = os.waitpid(runner, 0)
        runner = -1
        code = os.waitstatus_to_exitcode(wait_status)
        if word == b"1":
            line = f"exit {code}"
        else:
            why = word[1:].decode("utf-8", "replace") or f"it exited with status {code}"
            line = f"failed the runner did not enter the sandbox: {why}"
    except BaseException as error:  # noqa: BLE001 - the grader reads the status, whatever went wrong here
        if runner > 0:
            with contextlib.suppress(OSError):
                os.kill(runner, signal.SIGKILL)
                os.waitpid(runner, 0)
        line = f"failed {error!r}"
    with contextlib.suppress(OSError):
        os.write(status, (line.replace("\n", " ")[:1000] + "\n").encode("utf-8", "replace"))
    os._exit(0)


def _read_all(fd: int) -> bytes:
    """Read ``fd`` to its end (a few bytes at most here) and close it."""
    data = b""
    while chunk := os.read(fd, 1024):
        data += chunk
    os.close(fd)
    return data


def serve(control: socket.socket) -> None:
    """Fork a starter for every request read from ``control`` until the grader closes it."""
    loaded = sorted(name for name in sys.modules if name == "coursekit" or name.startswith("coursekit."))
    if loaded:
        raise SystemExit(f"coursekit fork server: refusing to serve with {loaded[0]} loaded")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, MAX_REQUEST_BYTES, len(REQUEST_FDS))
        except (ConnectionResetError, InterruptedError):
            return
        if not message:
            return
        if len(fds) != len(REQUEST_FDS):
            for fd in fds:
                os.close(fd)
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            control.close()  # this child's copy: a killed server's queue must not outlive it in its starters
            try:
                _start(json.loads(message), fds)
            finally:
                os._exit(START_FAILED)
        for fd in fds:
            os.close(fd)


class ForkServer:
    """The grader's end: starts the server and sends it requests (one server per grader process, threads share it)."""

    def __init__(self) -> None:
        from coursekit.grading.bwrap import SANDBOX_HOME, environment, interpreter

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._control = ours
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._silent_starts = 0
        self.process = subprocess.Popen([interpreter(), "-I", __file__, str(theirs.fileno())],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        # Its starters outlive a stuck request: they must not hold the
                                        # grader's stderr (a pipeline reading it would never end).
                                        stderr=subprocess.DEVNULL,
                                        pass_fds=(theirs.fileno(),), env=environment(SANDBOX_HOME), cwd="/",
                                        start_new_session=True)
        theirs.close()

    @property
    def alive(self) -> bool:
        """The server is still running."""
        return self.process.poll() is None

    def start_runner(self, holder: int, namespaces: dict[str, int], cgroup_procs: list[str], capabilities: int,
                     seccomp: bytes | None, runner: str, home: str, fds: tuple[int, int, int, int, int], *,
                     deadline: float) -> None:
        """Ask for a runner in the sandbox of the placeholder ``holder`` (a host PID).

        Args:
            holder: the placeholder's PID, as this process sees it.
            namespaces: the sandbox's namespaces' inode numbers by name (``pid``, ``mnt``, ...), as
                bubblewrap reported them: the starter refuses a placeholder in other ones.
            cgroup_procs: the sandbox's ``cgroup.procs`` files, which the runner joins before it runs.
            capabilities: the capabilities the runner keeps, as a bit mask.
            seccomp: the seccomp program (``None``: only ``no_new_privs``).
            runner: the path of ``runner.py`` inside the sandbox.
            home: the directory the runner starts in.
            fds: the runner's stdin, stdout and stderr, the pipe the starter reports on (see :func:`_start`)
                and a pidfd of the placeholder; the caller closes its copies once this returns.
            deadline: when, on ``time.monotonic``'s clock, to stop waiting for the server (and for other
                threads' requests before this one) to take the request; a server whose socket stays full
                until then (dozens of requests it has not read) is stopped (:meth:`stop`).

        Raises:
            OSError: the server is gone, or did not take the request before ``deadline``.
        """
        request = {"holder": holder, "namespaces": namespaces, "cgroup_procs": [str(p) for p in cgroup_procs],
                   "capabilities": capabilities, "seccomp": (seccomp or b"").hex(), "runner": runner, "home": home}
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise TimeoutError("other requests held the fork server past this start's deadline")
        try:
            # A timeout of 0 would make the socket non-blocking (BlockingIOError instead of TimeoutError).
            self._control.settimeout(max(MIN_SEND_TIMEOUT_S, deadline - time.monotonic()))
            socket.send_fds(self._control, [json.dumps(request).encode()], list(fds))
        except TimeoutError:
            self.stop()
            raise TimeoutError("the fork server did not take the request before the start's deadline") from None
        finally:
            self._lock.release()

    def heard(self) -> None:
        """A starter answered a request: the server is serving."""
        with self._count_lock:
            self._silent_starts = 0

    def silent_start(self) -> None:
        """A start had no word in time: stop the server after :data:`MAX_SILENT_STARTS` such starts in a row.

        The server, not the one request, is judged: a start cut short by a small cells' budget, or one
        starter that hangs while others answer (each answer resets the count), does not stop a server
        that serves.
        """
        with self._count_lock:
            self._silent_starts += 1
            stop = self._silent_starts >= MAX_SILENT_STARTS
        if stop:
            self.stop()

    def stop(self) -> None:
        """Kill a server that has stopped taking or answering requests (:func:`shared` starts another)."""
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=CLOSE_WAIT_S)

    def close(self) -> None:
        """Stop the server (runners already started go on): it exits when it reads the end of its socket."""
        self._control.close()
        try:
            self.process.wait(timeout=CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@functools.lru_cache(maxsize=None)
def pidfds_available() -> bool:
    """Whether this kernel has pidfds (Linux 5.3), which a start through the server needs."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (OSError, AttributeError):
        return False
    return True


_SHARED: ForkServer | None = None
_SHARED_LOCK = threading.Lock()


def shared() -> ForkServer:
    """This process's fork server, started on first use and again when it has died; stopped when this process exits."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None or not _SHARED.alive:
            if _SHARED is None:
                atexit.register(_close_shared)
            else:
                _SHARED.close()
            _SHARED = ForkServer()
        return _SHARED


def _close_shared() -> None:
    with _SHARED_LOCK:
        if _SHARED is not None:
            _SHARED.close()


def _main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    import numpy.random  # noqa: F401 - its global generator, seeded here, is reseeded in every runner
    import torch  # noqa: F401

    serve(control)


if __name__ == "__main__":
    _main()
