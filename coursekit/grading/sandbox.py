"""Run one attempt of a submission in a sandbox, and collect what its runner reports.

:func:`run_job` puts together what the other modules make: a uid lease
(:mod:`~coursekit.grading.uids`), the sandbox's cgroups
(:mod:`~coursekit.grading.cgroups`), the assignment's view of ``coursekit``
(:mod:`~coursekit.grading.package_view`), the seccomp filter
(:mod:`~coursekit.grading.seccomp`) and the bubblewrap command line
(:mod:`~coursekit.grading.bwrap`). In bubblewrap, the runner comes from the
fork server (:mod:`~coursekit.grading.forkserver`) into a sandbox that
bubblewrap built around a placeholder; where the server cannot be reached,
bubblewrap starts the runner itself. Then it talks to the runner inside
(:mod:`~coursekit.grading.runner`) in the messages of
:mod:`~coursekit.grading.protocol`: the setup first, the hidden calls only
once the runner reports that every cell has run. Every event is decoded
strictly, from bounded lines, and checked against the order the runner must
follow; the runner's own stderr is kept, capped, for the log.

From outside, the grader enforces the submission's two wall-clock budgets,
one for the cells (from the sandbox's start to the runner's
:class:`~coursekit.grading.protocol.CellsDone`), one for the hidden calls
(from then on), what is left of each for this attempt (later attempts share
them as :mod:`~coursekit.grading.reruns` says), and, should the
runner itself fail to stop a step, kills the sandbox once that step outlives
its limits by :data:`RUNNER_SLACK_S` more. Where bubblewrap or cgroups cannot
be used, the run still applies what it can and says so (``sandboxed``,
``cgroups``); the caller warns, and ``--require-sandbox`` refuses to start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import json
import select
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from coursekit.grading import forkserver, protocol
from coursekit.grading.bwrap import (SANDBOX_HOME, SANDBOX_WORKDIR, bubblewrap_available, bwrap_command, capability_mask,
                                     environment, interpreter, python_roots, requested_capabilities)
from coursekit.grading.cgroups import SandboxGroup, cgroups_available, join_command
from coursekit.grading.limits import Limits
from coursekit.grading.package_view import ViewPlan, materialise, package_root
from coursekit.grading.protocol import (CallEnd, CallStart, Calls, CallStatus, CellEnd, CellsDone, CellStart, Done,
                                        Ready, Refused, Setup)
from coursekit.grading.result_budget import MAX_RESULT_BYTES, wire_size
from coursekit.grading.seccomp import sandbox_filter
from coursekit.grading.uids import UidLease

#: how long past a step's own limits (and the runner's grace) the grader waits before it kills the sandbox.
RUNNER_SLACK_S = 10.0
#: bytes read from the runner at a time.
CHUNK = 1 << 16
#: how long the grader waits, once the sandbox is gone, for a forked runner's exit status.
STATUS_WAIT_S = 5.0
#: the longest a start through the fork server may take before bubblewrap starts the runner instead, in seconds
#: (a start takes a few tenths of a second; the server's first, which imports torch, a few seconds). Like any
#: sandbox's start it counts in the cells' budget: with bubblewrap's own start after it, it fits in the
#: budget's allowance for starting (``limits.SUBMISSION_START_S``).
FORK_START_S = 10.0
#: the least time worth a start through the fork server, in seconds (less: bubblewrap at once).
MIN_FORK_BUDGET_S = 1.0
#: the part of the cells' budget a start through the fork server leaves for bubblewrap's own start, should it fail.
BUBBLEWRAP_RESERVE_S = 10.0
#: the longest line the fork server's starter writes on the status pipe, in bytes (with room to spare).
STATUS_LINE_BYTES = 4096


def sandbox_available() -> tuple[bool, str]:
    """Whether submissions can run in bubblewrap here (see :func:`~coursekit.grading.bwrap.bubblewrap_available`)."""
    return bubblewrap_available()


@dataclass(frozen=True)
class Job:
    """One submission's work, as plain data (it travels to Dask workers).

    Attributes:
        files: the working copy, relative path -> base64 of the bytes.
        cells: ``[{"index", "source", "snapshot"}]``, the code cells to run (``snapshot``: a test cell,
            after which the kernel keeps the notebook's names for its questions' calls).
        calls: the hidden calls, sent only after the cells.
        adapters: spec code run before the calls.
        view: what the sandbox's ``coursekit`` holds.
        memory_budget_mb: see :attr:`~coursekit.grading.spec.AssignmentSpec.memory_budget_mb`.
        result_caps: the most result text each call may send, by call id
            (:func:`~coursekit.grading.result_budget.call_cap`): the runner refuses a longer
            report unread, and the grader checks again what it keeps.
        scopes: the index of the test cell whose names each call runs in, by call id
            (:attr:`~coursekit.grading.protocol.Calls.scopes`).
        result_bytes: the submission's result text still to keep
            (:data:`~coursekit.grading.result_budget.MAX_RESULT_BYTES` less what earlier attempts' calls kept).
    """

    files: dict[str, str]
    cells: list[dict[str, Any]]
    calls: list[dict[str, Any]]
    adapters: list[str]
    view: ViewPlan
    memory_budget_mb: int | None = None
    result_caps: dict[str, int] = field(default_factory=dict)
    scopes: dict[str, int] = field(default_factory=dict)
    result_bytes: int = MAX_RESULT_BYTES


@dataclass
class RawRun:
    """What came back from a submission's sandbox (after every attempt), before any verdict.

    Attributes:
        cells: one event per cell that ran, in order.
        calls: one event per graded call answered (or given up on), each call once: after reruns, those of the
            last attempt and of earlier ones that stand, then those given up on (in no order to rely on: the
            driver looks each up by its id).
        ready: the runner set up the sandbox and started the kernel.
        cells_done: the runner reported every cell it was sent run, with the kernel alive (the calls' phase began).
        refused: why the runner refused to run any student code (``""``: it did not).
        done: the runner's last word (``None``: it never said it).
        wall_killed: a wall-clock budget of the submission ran out (``wall_killed_in`` says which).
        wall_killed_in: ``"cells"`` or ``"calls"``: the phase whose budget ran out (``""``: none did).
        unresponsive: the runner did not stop a step in time; the grader killed the sandbox.
        protocol_errors: runner lines that were malformed or out of order (a grader bug, or worse).
        ignored_reports: lines the kernel wrote to the runner's channel that were not the report the runner
            waited for (:attr:`~coursekit.grading.protocol.Done.ignored_reports`; every attempt's, after reruns).
        returncode: the runner's exit status (negative: killed by that signal; bubblewrap's when bubblewrap
            started the runner).
        sandboxed: bubblewrap isolated the run.
        cgroups: the run had cgroups of its own (CPU quota, memory, processes).
        oom_kills: processes the sandbox's memory cgroup killed.
        forked: the runner came from the fork server (:mod:`~coursekit.grading.forkserver`), not from an ``exec``.
        fork_server_note: why the fork server did not start the runner, where it was asked to (``""``: it did,
            or it was not asked); after reruns, every attempt's, each named.
        seconds: wall-clock time of all attempts together.
        cells_seconds: of ``seconds``, the time before the cells were done (the sandbox's start included).
        calls_seconds: of ``seconds``, the time of the hidden calls (after the cells were done).
        attempts: how many times the submission ran (see :mod:`~coursekit.grading.reruns`).
        skipped_cells: ``(index, why)`` of cells left out of later attempts; ``why`` is
            ``"died"``, ``"memory"`` or ``"timeout"``.
        diagnostics: the end of the runner's stderr.
        kept_from_earlier: ``"cells"``: a rerun that left out only a graded function ran out of its cells' budget, and the
            run is the last attempt that made calls, whose calls kept their results (see :mod:`~coursekit.grading.reruns`;
            ``""``: no rerun did).
        kept_calls: how many calls, made before the crash, that attempt kept.
    """

    cells: list[CellEnd] = field(default_factory=list)
    calls: list[CallEnd] = field(default_factory=list)
    ready: bool = False
    cells_done: bool = False
    refused: str = ""
    done: Done | None = None
    wall_killed: bool = False
    wall_killed_in: str = ""
    unresponsive: bool = False
    protocol_errors: int = 0
    ignored_reports: int = 0
    returncode: int | None = None
    sandboxed: bool = True
    cgroups: bool = True
    oom_kills: int = 0
    forked: bool = False
    fork_server_note: str = ""
    seconds: float = 0.0
    cells_seconds: float = 0.0
    calls_seconds: float = 0.0
    attempts: int = 1
    skipped_cells: list[tuple[int, str]] = field(default_factory=list)
    diagnostics: str = ""
    kept_from_earlier: str = ""
    kept_calls: int = 0

    @property
    def finished(self) -> bool:
        """The runner ran every cell and every call it was sent."""
        done = self.done
        return (done is not None and done.stopped_cell is None and done.stopped_call is None
                and not done.stopped_in_adapter)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for shipping results back from a Dask worker)."""
        data = asdict(self)
        data["cells"] = [protocol.encode(event).decode() for event in self.cells]
        data["calls"] = [protocol.encode(event).decode() for event in self.calls]
        data["done"] = None if self.done is None else protocol.encode(self.done).decode()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RawRun":
        """The inverse of :meth:`to_dict`."""
        data = dict(data)
        data["cells"] = [protocol.decode(line.encode(), protocol.EVENTS) for line in data["cells"]]
        data["calls"] = [protocol.decode(line.encode(), protocol.EVENTS) for line in data["calls"]]
        data["done"] = None if data["done"] is None else protocol.decode(data["done"].encode(), protocol.EVENTS)
        data["skipped_cells"] = [tuple(item) for item in data["skipped_cells"]]
        return cls(**data)


class _Recorder:
    """Accepts the runner's events in the only order it may send them, into a :class:`RawRun`."""

    def __init__(self, run: RawRun, job: Job, limits: Limits) -> None:
        self.run = run
        self.cells_left = [int(cell["index"]) for cell in job.cells]
        self.calls_left = {str(call["id"]) for call in job.calls}
        self.open_step: tuple[str, Any] | None = None
        self.step_deadline: float | None = None
        self.step_budget = limits.step_wall_s + 2 * limits.grace_s + RUNNER_SLACK_S
        self.cells_done = False
        self.result_bytes_left = job.result_bytes
        self.result_caps = job.result_caps

    def accept(self, event: Any) -> bool:
        """Record ``event`` if it may come now; returns whether it was recorded."""
        run, expected = self.run, self._expected(event)
        if not expected:
            run.protocol_errors += 1
            return False
        if isinstance(event, Ready):
            run.ready = True
        elif isinstance(event, Refused):
            run.refused = event.reason
        elif isinstance(event, (CellStart, CallStart)):
            self.open_step = ("cell", event.index) if isinstance(event, CellStart) else ("call", event.call_id)
            self.step_deadline = time.monotonic() + self.step_budget
        elif isinstance(event, CellEnd):
            self.cells_left.remove(event.index)
            self.open_step = self.step_deadline = None
            run.cells.append(event)
        elif isinstance(event, CallEnd):
            self.calls_left.discard(event.call_id)
            self.open_step = self.step_deadline = None
            run.calls.append(self._within_budget(event))
        elif isinstance(event, CellsDone):
            self.cells_done = run.cells_done = True
        elif isinstance(event, Done):
            run.done = event
        return True

    def _within_budget(self, event: CallEnd) -> CallEnd:
        """``event``, or, when its result passes its cap or the submission's budget, the call failed without it."""
        size = wire_size(event.value) + wire_size(event.grads)
        if size > min(self.result_bytes_left, self.result_caps.get(event.call_id, MAX_RESULT_BYTES)):
            return dataclasses.replace(event, status=CallStatus.TOO_LARGE, value=None, grads=[], ename="", hits=[])
        self.result_bytes_left -= size
        return event

    def _expected(self, event: Any) -> bool:
        if self.run.done is not None or self.run.refused:
            return False
        if not self.run.ready:
            return isinstance(event, (Ready, Refused))
        if isinstance(event, Ready):
            return False
        if isinstance(event, CellStart):
            return self.open_step is None and not self.cells_done and event.index == (self.cells_left or [None])[0]
        if isinstance(event, CellEnd):
            return self.open_step == ("cell", event.index)
        if isinstance(event, CellsDone):
            return self.open_step is None and not self.cells_left
        if isinstance(event, CallStart):
            return self.cells_done and self.open_step is None and event.call_id in self.calls_left
        if isinstance(event, CallEnd):
            return self.open_step == ("call", event.call_id)
        return isinstance(event, Done)


def _others_can_use(path: str) -> bool:
    """Whether a non-root uid can traverse to and read ``path`` (checked through the mode bits)."""
    current = Path(path).resolve()
    for directory in [current, *current.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH or directory == current and not mode & stat.S_IROTH:
            return False
    return True


def kernel_leaves_root(use_sandbox: bool, view: Path | None = None) -> tuple[bool, str]:
    """Whether the kernel can run as a uid of its own (never as root): ``(True, "")`` or ``(False, reason)``.

    A grader that is not root runs the kernel as itself. A root grader gives it
    a leased uid, which must be able to read the Python environment: inside
    bubblewrap it always can; without it only where every directory of the
    environment is readable by other uids. Otherwise the grader refuses to
    run student code rather than run it as root.

    Args:
        use_sandbox: whether the run is inside bubblewrap.
        view: the assignment's view of the package, which the kernel imports from too.

    Example:
        >>> kernel_leaves_root(use_sandbox=True)
        (True, '')
    """
    if os.geteuid() != 0 or use_sandbox:
        return True, ""
    unreadable = [root for root in python_roots() + ([str(view)] if view else []) if not _others_can_use(root)]
    if unreadable:
        return False, (f"without bubblewrap the kernel would run as root: the Python environment ({unreadable[0]}) "
                       "is not readable by other uids, so a sandbox uid could not import from it")
    return True, ""


def _send_later(stream: Any, data: bytes, close: bool) -> None:
    """Write ``data`` to the runner's stdin in a thread (it may be large, and the runner reads as it goes)."""
    def write() -> None:
        # A runner that is gone closed the pipe; what happened is read from its events.
        with contextlib.suppress(OSError, ValueError):
            stream.write(data)
            stream.flush()
            if close:
                stream.close()

    threading.Thread(target=write, daemon=True).start()


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Kill the sandbox, wait for it, and close its pipes."""
    _kill(process)
    process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        # A writer thread may still hold stdin: it suppresses what closing it here makes it raise.
        with contextlib.suppress(OSError, ValueError):
            if stream is not None:
                stream.close()


def _seccomp_pipe() -> int | None:
    """A pipe's read end holding the seccomp program (bubblewrap reads it to its end)."""
    program = sandbox_filter()
    if program is None:
        return None
    read, write = os.pipe()
    os.write(write, program)
    os.close(write)
    return read


_NO_WORD_IN_TIME = "the runner did not report itself in the sandbox in time"


@dataclass
class _ForkedRunner:
    """A runner started by the fork server: its pipes, and the pipe its starter reports on."""

    stdin: Any
    stdout: Any
    stderr: Any
    status: int
    said: bytes = b""

    def first_word(self, deadline: float) -> str:
        """The starter's first line: ``started``, ``failed WHY``, or why none came (its end, or ``deadline``)."""
        line = _read_line(self.status, deadline, self)
        if line is None:
            return _NO_WORD_IN_TIME
        return line.decode("utf-8", "replace") or "the fork server's starter ended without a word"

    def exit_status(self, fallback: int | None) -> int | None:
        """The runner's exit status (negative: the signal that killed it), once the sandbox is gone.

        The starter writes it as soon as the runner has ended, which a killed sandbox's runner has by now or
        within :data:`STATUS_WAIT_S`; ``fallback`` when none came.
        """
        try:
            line = _read_line(self.status, time.monotonic() + STATUS_WAIT_S, self) or b""
        finally:
            self.close()
        word, _, code = line.decode("utf-8", "replace").partition(" ")
        try:
            return int(code) if word == "exit" else fallback
        except ValueError:
            return fallback

    def close(self) -> None:
        """Close the grader's ends of the runner's pipes."""
        with contextlib.suppress(OSError):
            os.close(self.status)
        for stream in (self.stdin, self.stdout, self.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.close()


def _readable(fd: int, deadline: float) -> bool:
    """Whether ``fd`` has data or its end before ``deadline`` (``poll``: any descriptor number)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0.0, deadline - time.monotonic()) * 1000))


def _read_line(fd: int, deadline: float, runner: _ForkedRunner) -> bytes | None:
    """The next line from ``fd`` (without its newline; what follows it stays in ``runner.said``).

    ``b""`` when ``fd`` ended first, ``None`` when ``deadline`` came first.
    """
    while b"\n" not in runner.said and len(runner.said) < STATUS_LINE_BYTES:
        if not _readable(fd, deadline):
            return None
        chunk = os.read(fd, STATUS_LINE_BYTES)
        if not chunk:
            break
        runner.said += chunk
    line, _, runner.said = runner.said.partition(b"\n")
    return line


def _placeholder(info: bytes) -> tuple[int, int, dict[str, int]]:
    """The placeholder's PID, a pidfd of it, and the sandbox's namespaces' inode numbers.

    Args:
        info: bubblewrap's ``--info-fd`` JSON, which names the sandbox's init (``child-pid``), whose only child
            the placeholder is.

    Returns:
        ``(pid, pidfd, namespaces)``: the pidfd is taken, then the PID checked to be init's only child again,
        so the pidfd is the placeholder's (the starter checks that it is still alive once it has opened the
        placeholder's ``/proc`` files: a PID is not reused while its process lives).
    """
    data = json.loads(info)
    init = int(data["child-pid"])
    namespaces = {key[: -len("-namespace")]: int(value) for key, value in data.items() if key.endswith("-namespace")}
    holder = _only_child(init)
    pidfd = os.pidfd_open(holder)
    try:
        if _only_child(init) != holder:
            raise OSError("the sandbox's placeholder changed while it was looked up")
    except BaseException:
        os.close(pidfd)
        raise
    return holder, pidfd, namespaces


def _only_child(pid: int) -> int:
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        children = handle.read().split()
    if len(children) != 1:
        raise OSError(f"the sandbox's init has {len(children)} children, not one placeholder")
    return int(children[0])


def _read_to_end(fd: int, deadline: float) -> bytes:
    """What ``fd`` holds until its end (at most :data:`CHUNK` bytes), or what came before ``deadline``."""
    data = b""
    while len(data) < CHUNK and _readable(fd, deadline):
        chunk = os.read(fd, CHUNK - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _start_from_fork_server(limits: Limits, view: Path, group: SandboxGroup | None,
                            deadline: float) -> tuple[Any, _ForkedRunner | None, str]:
    """Start the sandbox with a placeholder inside, then ask the fork server for a runner in it.

    The start may take :data:`FORK_START_S` (the server's own start, which imports torch, included) or
    what is left of the cells' ``deadline`` less :data:`BUBBLEWRAP_RESERVE_S`, whichever ends first, so
    that a start that fails leaves bubblewrap about that reserve (less the time its sandbox takes to stop).
    The student's loss is bounded, not removed: a failed start counts in the cells' budget, as any start.

    Returns:
        ``(None, None, "")`` without asking the server where that leaves less than
        :data:`MIN_FORK_BUDGET_S` or the kernel has no pidfds (Linux before 5.3). Otherwise the bubblewrap
        process, the runner (in the sandbox, limits set) and ``""``; or, when the placeholder
        never said it was ready, the fork server could not be reached or the runner never entered the
        sandbox, ``(None, None, why)`` with the sandbox already stopped: the caller then has bubblewrap
        start the runner (which fails as the placeholder did, and says why in its stderr).
    """
    # What bubblewrap would need, should this start fail, is kept out of the start's share.
    deadline = min(deadline - BUBBLEWRAP_RESERVE_S, time.monotonic() + FORK_START_S)
    if deadline - time.monotonic() < MIN_FORK_BUDGET_S or not forkserver.pidfds_available():
        return None, None, ""  # not asked: nothing to note
    info_read, info_write = os.pipe()
    fds: list[int] = []
    process: subprocess.Popen[bytes] | None = None
    runner: _ForkedRunner | None = None
    seccomp: int | None = None
    try:
        try:
            seccomp = _seccomp_pipe()
            command = bwrap_command(limits.disk_mb, package_root(), view, seccomp, info_fd=info_write,
                                    capabilities=False)
            command += [interpreter(), "-I", "-S", "-c", forkserver.HOLDER_SOURCE]
            if group is not None:
                command = join_command(group.procs_files(), command)
            passed = (info_write,) if seccomp is None else (seccomp, info_write)
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, pass_fds=passed, cwd="/", start_new_session=True)
        finally:
            os.close(info_write)
            if seccomp is not None:
                os.close(seccomp)
        assert process.stdout is not None
        if not _readable(process.stdout.fileno(), deadline) or os.read(process.stdout.fileno(), 1) != b".":
            raise OSError("the sandbox's placeholder did not start")
        # bubblewrap writes the JSON in pieces, and may write it after the placeholder has started.
        holder, pidfd, namespaces = _placeholder(_read_to_end(info_read, deadline))
        fds.append(pidfd)
        for _ in range(4):
            fds += os.pipe()
        _, stdin_read, stdin_write, stdout_read, stdout_write, stderr_read, stderr_write, status_read, status_write = fds
        server = forkserver.shared()
        try:
            server.start_runner(
                holder, namespaces, [str(p) for p in group.procs_files()] if group is not None else [],
                capability_mask(requested_capabilities()), sandbox_filter(),
                str(package_root() / "grading" / "runner.py"), SANDBOX_HOME,
                (stdin_read, stdout_write, stderr_write, status_write, pidfd), deadline=deadline)
        finally:
            for fd in (stdin_read, stdout_write, stderr_write, status_write, pidfd):
                os.close(fd)
                fds.remove(fd)
        runner = _ForkedRunner(os.fdopen(stdin_write, "wb"), os.fdopen(stdout_read, "rb", buffering=0),
                               os.fdopen(stderr_read, "rb", buffering=0), status_read)
        fds.clear()
        word = runner.first_word(deadline)
        if word == _NO_WORD_IN_TIME:
            server.silent_start()
        else:
            server.heard()
        if word != "started":
            raise OSError(word)
        return process, runner, ""
    except Exception as error:  # noqa: BLE001 - whatever failed, the sandbox is stopped and bubblewrap starts it
        for fd in fds:
            os.close(fd)
        if runner is not None:
            runner.close()
        if process is not None:
            _stop(process)
        return None, None, f"the fork server did not start the runner ({error})"
    finally:
        os.close(info_read)


def run_job(job: Job, limits: Limits, *, cells_s: float, calls_s: float, use_sandbox: bool | None = None,
            use_cgroups: bool | None = None, use_fork_server: bool = True) -> RawRun:
    """Run one attempt of ``job`` under ``limits`` until it ends or a phase outlives its budget.

    Args:
        job: the submission's work.
        limits: the resource limits.
        cells_s: wall-clock seconds the attempt may take until the runner reports that the cells are
            done (what is left of the cells' budget, :attr:`Limits.wall_s`, for this attempt).
        calls_s: wall-clock seconds the hidden calls may take from then on (what is left of
            :attr:`Limits.calls_wall_s`).
        use_sandbox: force bubblewrap on or off; ``None`` uses it when available.
        use_cgroups: force cgroups on or off; ``None`` uses them when available.
        use_fork_server: in bubblewrap, start the runner from the fork server
            (:mod:`~coursekit.grading.forkserver`) instead of by bubblewrap's ``exec``; the sandbox is the
            same either way.

    Returns:
        The raw run (never raises for anything the student's code does), with the time each phase took.

    Raises:
        RuntimeError: ``use_sandbox=True`` but the sandbox is not available, or the kernel would run as
            root (see :func:`kernel_leaves_root`).
    """
    # The cells' budget counts from here: building the sandbox is part of the attempt.
    started = time.monotonic()
    clock = _PhaseClock(started, cells_s, calls_s)
    available, reason = bubblewrap_available()
    use_sandbox = available if use_sandbox is None else use_sandbox
    if use_sandbox and not available:
        raise RuntimeError(f"the sandbox is not available: {reason}")
    view = materialise(job.view)
    leaves_root, why_root = kernel_leaves_root(bool(use_sandbox), view)
    if not leaves_root:
        raise RuntimeError(f"refusing to run student code: {why_root}")
    use_cgroups = cgroups_available()[0] if use_cgroups is None else use_cgroups
    run = RawRun(sandboxed=bool(use_sandbox), cgroups=bool(use_cgroups))
    lease: UidLease | None = None
    group: SandboxGroup | None = None
    host_workdir: str | None = None
    seccomp: int | None = None
    # Taken inside the try, so that whatever was taken is given back when a later step fails (a refused cgroup
    # kept its uid's lease until the grader exited: grader review r12, finding R3).
    try:
        lease = UidLease() if os.geteuid() == 0 else None
        group = SandboxGroup.create(limits) if use_cgroups else None
        host_workdir = None if use_sandbox else tempfile.mkdtemp(prefix="coursekit-grade-")
        if host_workdir:
            os.chmod(host_workdir, 0o711)
        setup = Setup(job.files, job.cells, limits.for_runner(), lease.uid if lease else None,
                      SANDBOX_WORKDIR if use_sandbox else os.path.join(host_workdir or "", "work"),
                      bool(use_sandbox), job.memory_budget_mb,
                      capability_mask(requested_capabilities()) if use_sandbox else None)
        runner: _ForkedRunner | None = None
        not_forked = ""
        if use_sandbox and use_fork_server:
            process, runner, not_forked = _start_from_fork_server(limits, view, group, clock.deadline)
        if runner is None:
            # Made here, not before the fork server is asked: a forked runner's sandbox has its own.
            seccomp = _seccomp_pipe() if use_sandbox else None
            if use_sandbox:
                command = bwrap_command(limits.disk_mb, package_root(), view, seccomp)
                command += [interpreter(), "-I", str(package_root() / "grading" / "runner.py")]
                env = None
            else:
                command = [interpreter(), "-I", str(view / "grading" / "runner.py")]
                env = environment(host_workdir or "/")
            if group is not None:
                command = join_command(group.procs_files(), command)
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, pass_fds=() if seccomp is None else (seccomp,),
                                       env=env, cwd=host_workdir or "/", start_new_session=True)
            if seccomp is not None:
                os.close(seccomp)
                seccomp = None
        run.forked = runner is not None
        try:
            _talk(runner or process, job, limits, setup, run, clock)
        finally:
            _stop(process)
            run.returncode = process.returncode if runner is None else runner.exit_status(process.returncode)
        run.fork_server_note = not_forked
    finally:
        if seccomp is not None:
            os.close(seccomp)
        if group is not None:
            run.oom_kills = group.oom_kills()
            group.remove()
        if lease:
            lease.release()
        if host_workdir:
            shutil.rmtree(host_workdir, ignore_errors=True)
    run.ignored_reports = run.done.ignored_reports if run.done is not None else 0
    ended = time.monotonic()
    run.seconds = ended - started
    clock.record(run, ended)
    return run


class _PhaseClock:
    """The deadline of the phase an attempt is in: the cells' until they are done, then the calls'.

    Example:
        >>> clock = _PhaseClock(started=100.0, cells_s=10.0, calls_s=5.0)
        >>> clock.deadline, clock.phase
        (110.0, 'cells')
        >>> clock.cells_done(now=104.0)
        >>> clock.deadline, clock.phase, clock.cells_seconds
        (109.0, 'calls', 4.0)
    """

    def __init__(self, started: float, cells_s: float, calls_s: float) -> None:
        self.started, self.calls_s = started, calls_s
        self.deadline = started + cells_s
        self.phase = "cells"
        self.cells_seconds: float | None = None

    def cells_done(self, now: float) -> None:
        """The cells are done at ``now``: from here on, the calls' budget counts."""
        self.cells_seconds = now - self.started
        self.deadline, self.phase = now + self.calls_s, "calls"

    def record(self, run: RawRun, now: float) -> None:
        """Write into ``run`` the time each phase took, the sandbox's end counted in the phase it ended in."""
        total = now - self.started
        run.cells_seconds = total if self.cells_seconds is None else self.cells_seconds
        run.calls_seconds = total - run.cells_seconds


def _talk(process: subprocess.Popen[bytes], job: Job, limits: Limits, setup: Setup, run: RawRun,
          clock: _PhaseClock) -> None:
    """Send the setup, then the calls when the cells are done; record events until the runner ends."""
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    _send_later(process.stdin, protocol.encode(setup), close=False)
    recorder = _Recorder(run, job, limits)
    reader = protocol.LineReader()
    diagnostics = bytearray()
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ, "events")
    selector.register(process.stderr, selectors.EVENT_READ, "diagnostics")
    calls_sent = False
    while selector.get_map():
        now = time.monotonic()
        if now >= clock.deadline:
            run.wall_killed, run.wall_killed_in = True, clock.phase
            break
        if recorder.step_deadline is not None and now >= recorder.step_deadline:
            run.unresponsive = True
            break
        wait = min(clock.deadline, recorder.step_deadline or clock.deadline) - now
        for key, _ in selector.select(timeout=min(wait, 1.0)):
            chunk = os.read(key.fileobj.fileno(), CHUNK)  # type: ignore[union-attr]
            if not chunk:
                selector.unregister(key.fileobj)
            elif key.data == "diagnostics":
                # The end is what explains a failure; a flood written before it must not push it out.
                diagnostics += chunk
                del diagnostics[: max(0, len(diagnostics) - limits.diagnostics_bytes)]
            else:
                for line in reader.feed(chunk):
                    try:
                        event = protocol.decode(line, protocol.EVENTS)
                    except protocol.ProtocolError:
                        run.protocol_errors += 1
                        continue
                    recorder.accept(event)
                    if recorder.cells_done and not calls_sent:
                        clock.cells_done(time.monotonic())
                        calls = Calls(job.adapters, job.calls, list(job.view.tripwires), dict(job.result_caps),
                                      dict(job.scopes))
                        _send_later(process.stdin, protocol.encode(calls), close=True)
                        calls_sent = True
        if run.done is not None or run.refused:
            break
    run.protocol_errors += reader.oversized
    selector.close()
    run.diagnostics = diagnostics.decode("utf-8", "replace")
