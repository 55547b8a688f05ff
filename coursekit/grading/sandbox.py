"""Run one submission's job in a bubblewrap sandbox, with limits enforced from outside.

The sandbox (Linux namespaces through ``bwrap``, as root):

* a fresh mount namespace whose only contents are a read-only ``/usr``, the
  read-only Python environment (the virtual environment, the interpreter it
  links to, and the ``coursekit`` package it imports), ``/proc``, a minimal
  ``/dev``, and two size-capped tmpfs mounts: the working copy under
  ``/home/student`` and ``/tmp``. The course directory (``source/``, the
  gradebook, the release's hidden parts, other submissions) and every home
  directory are simply absent;
* new network, PID, IPC and UTS namespaces (``--unshare-net --unshare-pid``):
  no network at all, and every process dies with the sandbox;
* a dedicated, otherwise unused uid per concurrent run (leased through lock
  files), so that ``RLIMIT_NPROC`` counts only this submission's processes;
* rlimits on address space, processes, file size, CPU seconds, open files,
  and no core dumps, applied by the runner after it drops root and before the
  first student cell.

From outside, the grader enforces the per-submission wall-clock limit (SIGKILL
to the sandbox), caps the bytes of stdout/stderr it reads (and then closes the
pipe, so further writes fail) and caps the event channel.

Where ``bwrap`` cannot be used, :func:`run_job` still applies every limit the
runner can apply itself and reports ``sandboxed=False``; the caller warns loudly
and ``--require-sandbox`` refuses to run.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import coursekit

RUNNER = Path(__file__).with_name("runner.py")
SANDBOX_HOME = "/home/student"
SANDBOX_WORKDIR = SANDBOX_HOME + "/work"
UID_BASE = 61000
UID_COUNT = 1000
UID_LOCK_DIR = Path(tempfile.gettempdir()) / "coursekit-grade-uids"


@dataclass(frozen=True)
class Limits:
    """Resource limits for one submission.

    Attributes:
        timeout_s: wall-clock limit for each cell and each graded call.
        submission_timeout_s: wall-clock limit for the whole submission; ``None``
            means ``4 * timeout_s + 30``.
        memory_mb: address-space limit (RLIMIT_AS) of every sandboxed process.
        nproc: processes and threads the sandbox uid may have (RLIMIT_NPROC).
        fsize_mb: largest file a process may write (RLIMIT_FSIZE).
        disk_mb: size of each of the two tmpfs mounts (working copy, /tmp).
        nofile: open file descriptors per process.
        output_bytes: stdout/stderr bytes read from the sandbox's own descriptors.
        output_cell: characters of output kept per cell in the autograded notebook.
        output_total: characters a submission may print through ``sys.stdout`` in all.
        events_bytes: most bytes accepted on the event channel.
    """

    timeout_s: float = 30.0
    submission_timeout_s: float | None = None
    memory_mb: int = 2048
    nproc: int = 256
    fsize_mb: int = 64
    disk_mb: int = 256
    nofile: int = 256
    output_bytes: int = 1_000_000
    output_cell: int = 20_000
    output_total: int = 2_000_000
    events_bytes: int = 64_000_000

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_mb", "nproc", "fsize_mb", "disk_mb", "nofile"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive number, got {value!r}")
        if self.memory_mb < 512:
            raise ValueError(f"Limits.memory_mb must be at least 512 (Python and torch need it), got {self.memory_mb}")

    @property
    def wall_s(self) -> float:
        """The per-submission wall-clock limit in seconds."""
        if self.submission_timeout_s is not None:
            return float(self.submission_timeout_s)
        return 4 * float(self.timeout_s) + 30.0


@dataclass
class RawRun:
    """What came back from one sandboxed run, before any interpretation.

    Attributes:
        events: the event channel's lines that parsed as JSON objects.
        bad_lines: how many lines did not.
        output: the first ``Limits.output_bytes`` of raw stdout/stderr.
        output_truncated: more was written than was read.
        returncode: the sandbox's exit status (negative: killed by that signal).
        wall_killed: the grader killed it at the per-submission wall-clock limit.
        events_overflow: the event channel went over its cap.
        sandboxed: whether bubblewrap isolated the run.
        seconds: wall-clock duration.
        skipped_cells: cells left out after the process died in them, hit the
            memory limit or ran past their time limit (see :func:`run_submission`).
        skipped_reasons: ``"died"``, ``"memory"`` or ``"timeout"`` for each skipped cell.
        stalled: the step the grader killed because it ran past its time limit
            and the process did not stop it itself (its timer was caught,
            ignored or disabled): ``{"cell": index}`` or ``{"call": id}``.
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: int = 0
    output: str = ""
    output_truncated: bool = False
    returncode: int | None = None
    wall_killed: bool = False
    events_overflow: bool = False
    sandboxed: bool = True
    seconds: float = 0.0
    skipped_cells: list[int] = field(default_factory=list)
    skipped_reasons: list[str] = field(default_factory=list)
    stalled: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for shipping results back from a Dask worker)."""
        return asdict(self)


def _python_roots() -> list[str]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    return sorted(str(Path(r).resolve()) for r in roots)


def _package_root() -> str:
    return str(Path(coursekit.__file__).resolve().parent)


def _interpreter() -> str:
    return str(Path(sys.prefix) / "bin" / "python") if sys.prefix != sys.base_prefix else sys.executable


def _ancestors(path: str) -> list[str]:
    parts = Path(path).parts[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _bwrap_args(limits: Limits) -> list[str]:
    args = [
        "bwrap",
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "sandbox",
        "--clearenv",
    ]
    for top in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / top
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ("ld.so.cache", "ld.so.conf", "localtime", "nsswitch.conf"):
        if (Path("/etc") / name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    disk = str(int(limits.disk_mb) * 1024 * 1024)
    # The scratch file systems come before the read-only binds: a Python
    # environment or checkout that lives under /tmp (a CI clone, say) is then
    # bound on top of the empty tmpfs instead of being hidden by it.
    args += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--perms", "01777", "--size", disk, "--tmpfs", "/tmp",
        "--perms", "0755", "--size", disk, "--tmpfs", SANDBOX_HOME,
    ]
    created: set[str] = {"/tmp", SANDBOX_HOME}
    binds = _python_roots() + [_package_root()]
    for target in binds:
        for parent in _ancestors(target):
            if parent not in created and not parent.startswith("/usr"):
                args += ["--perms", "0755", "--dir", parent]
                created.add(parent)
        args += ["--ro-bind", target, target]
    args += ["--chdir", SANDBOX_HOME]
    return args


def _environment(home: str) -> dict[str, str]:
    return {
        "HOME": home,
        "PATH": f"{Path(_interpreter()).parent}:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
    }


@functools.lru_cache(maxsize=None)
def sandbox_available() -> tuple[bool, str]:
    """Whether bubblewrap isolation with a dedicated uid works on this machine.

    Returns:
        ``(True, "")`` or ``(False, reason)``.

    Example:
        >>> ok, reason = sandbox_available()
        >>> isinstance(ok, bool) and isinstance(reason, str)
        True
    """
    if shutil.which("bwrap") is None:
        return False, "bubblewrap (bwrap) is not installed"
    if os.geteuid() != 0:
        return False, "the grader is not root, so it cannot run submissions under dedicated uids"
    probe = _bwrap_args(Limits()) + [_interpreter(), "-E", "-s", "-c", "import coursekit"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        return False, f"bwrap failed to start: {error}"
    if done.returncode != 0:
        return False, "bwrap failed: " + done.stderr.decode(errors="replace")[-500:]
    return True, ""


class _UidLease:
    """An exclusive lease on one sandbox uid, shared safely between processes through flock."""

    def __init__(self) -> None:
        UID_LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
        start = (os.getpid() * 7919 + threading.get_ident()) % UID_COUNT
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
        _kill_uid(self.uid)
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()


def _others_can_use(path: str) -> bool:
    """Whether a non-root uid can traverse to and read ``path`` (checked through the mode bits)."""
    import stat

    current = Path(path).resolve()
    for directory in [current, *current.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH or directory == current and not mode & stat.S_IROTH:
            return False
    return True


def _kill_uid(uid: int) -> None:
    """SIGKILL every process left running as ``uid`` (only needed without a PID namespace)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid == uid:
                os.kill(int(entry), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def run_job(job: dict[str, Any], limits: Limits, *, use_sandbox: bool | None = None) -> RawRun:
    """Run the runner on ``job`` under ``limits`` and collect what it reports.

    Args:
        job: ``{"files": {relative path: base64}, "cells": [...], "calls": [...]}``;
            this function adds the limits, uid, workdir and channel descriptor.
        limits: the resource limits.
        use_sandbox: force bubblewrap on or off; ``None`` uses it when available.

    Returns:
        The raw run (never raises for anything the student's code does).

    Raises:
        RuntimeError: ``use_sandbox=True`` but the sandbox is not available.
    """
    available, reason = sandbox_available()
    if use_sandbox is None:
        use_sandbox = available
    if use_sandbox and not available:
        raise RuntimeError(f"the sandbox is not available: {reason}")
    # Without the sandbox's own view of the filesystem a dedicated uid is only
    # usable when the Python environment is readable by everyone.
    can_drop = use_sandbox or all(_others_can_use(p) for p in _python_roots() + [_package_root()])
    lease = _UidLease() if os.geteuid() == 0 and can_drop else None
    host_workdir = None if use_sandbox else tempfile.mkdtemp(prefix="coursekit-grade-")
    if host_workdir:
        os.chmod(host_workdir, 0o711)
    event_read, event_write = os.pipe()
    out_read, out_write = os.pipe()
    full_job = dict(job)
    full_job.update(
        limits={
            "memory_mb": limits.memory_mb,
            "nproc": limits.nproc,
            "fsize_mb": limits.fsize_mb,
            "cpu_s": int(limits.wall_s) + 5,
            "nofile": limits.nofile,
            "cell_timeout": limits.timeout_s,
            "call_timeout": limits.timeout_s,
            "output_cell": limits.output_cell,
            "output_total": limits.output_total,
        },
        uid=lease.uid if lease else None,
        workdir=SANDBOX_WORKDIR if use_sandbox else os.path.join(host_workdir, "work"),
        event_fd=event_write,
    )
    runner = [_interpreter(), "-E", "-s", str(RUNNER)]
    if use_sandbox:
        command = _bwrap_args(limits)
        for key, value in _environment(SANDBOX_HOME).items():
            command += ["--setenv", key, value]
        command += runner
        env = None
    else:
        command = runner
        env = _environment(host_workdir)
    result = RawRun(sandboxed=bool(use_sandbox))
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=out_write,
            stderr=out_write,
            pass_fds=(event_write,),
            env=env,
            cwd=host_workdir or "/",
            start_new_session=True,
        )
    except OSError:
        for fd in (event_read, event_write, out_read, out_write):
            os.close(fd)
        if lease:
            lease.release()
        raise
    os.close(event_write)
    os.close(out_write)
    payload = json.dumps(full_job).encode()
    feeder = threading.Thread(target=_feed, args=(process, payload), daemon=True)
    feeder.start()
    try:
        _collect(process, event_read, out_read, limits, result, started)
    finally:
        try:
            process.wait(timeout=max(started + limits.wall_s - time.monotonic(), 0.5))
        except subprocess.TimeoutExpired:
            result.wall_killed = True
            _kill(process)
            process.wait()
        result.returncode = process.returncode
        result.seconds = time.monotonic() - started
        os.close(event_read)
        if lease:
            lease.release()
        if host_workdir:
            shutil.rmtree(host_workdir, ignore_errors=True)
    return result


def _feed(process: subprocess.Popen[bytes], payload: bytes) -> None:
    # A submission that dies before reading its job closes the pipe; its outcome
    # is decided from its exit status, not here.
    with contextlib.suppress(OSError):
        assert process.stdin is not None
        process.stdin.write(payload)
        process.stdin.close()


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()


def _collect(
    process: subprocess.Popen[bytes], event_fd: int, out_fd: int, limits: Limits, result: RawRun, started: float
) -> None:
    selector = selectors.DefaultSelector()
    selector.register(event_fd, selectors.EVENT_READ, "events")
    selector.register(out_fd, selectors.EVENT_READ, "output")
    buffer = bytearray()
    output = bytearray()
    received = 0
    open_fds = {event_fd, out_fd}
    deadline = started + limits.wall_s
    # The runner stops a cell or call at timeout_s with its own timer; student
    # code can catch or disable that timer, so the grader also kills the
    # process when a step outlives it by a margin (see run_submission).
    step_budget = 1.25 * float(limits.timeout_s) + 2.0
    step: dict[str, Any] | None = None
    step_deadline = math.inf
    while event_fd in open_fds:
        now = time.monotonic()
        if now >= step_deadline and step is not None:
            result.stalled = step
            _kill(process)
            break
        remaining = deadline - now
        if remaining <= 0:
            result.wall_killed = True
            _kill(process)
            break
        remaining = min(remaining, max(step_deadline - now, 0.0))
        for key, _ in selector.select(timeout=min(remaining, 1.0)):
            chunk = os.read(key.fd, 1 << 16)
            if key.data == "output":
                if not chunk or len(output) + len(chunk) > limits.output_bytes:
                    output += chunk[: max(0, limits.output_bytes - len(output))]
                    result.output_truncated = bool(chunk)
                    selector.unregister(out_fd)
                    os.close(out_fd)
                    open_fds.discard(out_fd)
                else:
                    output += chunk
                continue
            if not chunk:
                selector.unregister(event_fd)
                open_fds.discard(event_fd)
                break
            received += len(chunk)
            if received > limits.events_bytes:
                result.events_overflow = True
                _kill(process)
                selector.unregister(event_fd)
                open_fds.discard(event_fd)
                break
            buffer += chunk
            *lines, rest = bytes(buffer).split(b"\n")
            buffer = bytearray(rest)
            for line in lines:
                event = _parse_event(line, result)
                if event is None:
                    continue
                kind = event["ev"]
                if kind in ("cell_start", "call_start"):
                    step = {"cell": event.get("i")} if kind == "cell_start" else {"call": event.get("id")}
                    step_deadline = time.monotonic() + step_budget
                elif kind in ("cell_end", "call", "done"):
                    step, step_deadline = None, math.inf
    if out_fd in open_fds:
        selector.unregister(out_fd)
        os.close(out_fd)
    selector.close()
    result.output = output.decode("utf-8", errors="replace")


def _parse_event(line: bytes, result: RawRun) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):
        result.bad_lines += 1
        return None
    if isinstance(event, dict) and isinstance(event.get("ev"), str):
        result.events.append(event)
        return event
    result.bad_lines += 1
    return None


MAX_RESTARTS = 3


def _unanswered_call(run: RawRun) -> str | None:
    """The id of the call the process was in when it stopped, if it stopped in one."""
    answered = {e.get("id") for e in run.events if e.get("ev") == "call"}
    started = [e.get("id") for e in run.events if e.get("ev") == "call_start"]
    return started[-1] if started and started[-1] not in answered else None


def run_submission(job: dict[str, Any], limits: Limits, *, use_sandbox: bool | None = None) -> RawRun:
    """Run a job; when a cell kills the process, exhausts memory or will not stop, rerun without it.

    A kernel that dies (``os._exit``, a segfault, an abort) in one cell would
    otherwise lose every later answer, and a cell that hoards memory up to the
    limit starves every later one. Like an instructor restarting a kernel
    and skipping the culprit, the grader reruns from scratch without the cell
    it died in, at most :data:`MAX_RESTARTS` times. A cell or a graded call
    that outlives its time limit because it caught or disabled the runner's
    timer is killed from outside (see :attr:`RawRun.stalled`) and treated the
    same way: the cell is skipped, or every call of that function is answered
    "time limit reached" without running it again. What was skipped is reported.

    Args:
        job: see :func:`run_job`.
        limits: the resource limits (the wall-clock limit applies to each attempt).
        use_sandbox: see :func:`run_job`.

    Returns:
        The last attempt's run, with ``skipped_cells`` filled in and a timeout
        event for every call that was not run again.
    """
    skipped: list[int] = []
    reasons: list[str] = []
    cells = list(job["cells"])
    calls = list(job.get("calls", []))
    names = {call["id"]: call["name"] for call in calls}
    dropped_calls: list[tuple[str, str]] = []
    for _attempt in range(MAX_RESTARTS + 1):
        run = run_job({**job, "cells": cells, "calls": calls}, limits, use_sandbox=use_sandbox)
        run.skipped_cells, run.skipped_reasons = list(skipped), list(reasons)
        run.events += [
            {"ev": "call", "id": call_id, "ok": False, why: True, "error": f"not run again ({why})"}
            for call_id, why in dropped_calls
        ]
        if run.wall_killed or run.events_overflow:
            return run
        memory = [e.get("i") for e in run.events if e.get("ev") == "cell_end" and e.get("ename") == "MemoryError"]
        finished = any(event.get("ev") == "done" for event in run.events)
        stalled = run.stalled or {}
        if _attempt == MAX_RESTARTS:
            return run
        if "call" in stalled:
            stopped_call, why_call = stalled["call"], "timeout"
        else:
            stopped_call, why_call = (None if finished else _unanswered_call(run)), "died"
        if stopped_call in names:
            name = names[stopped_call]
            dropped_calls += [(call["id"], why_call) for call in calls if call["name"] == name]
            calls = [call for call in calls if call["name"] != name]
            continue
        if any(stalled.get("cell") == cell["index"] for cell in cells):
            culprit, why = stalled["cell"], "timeout"
        elif memory:
            culprit, why = memory[0], "memory"
        elif finished:
            return run
        else:
            started = [e.get("i") for e in run.events if e.get("ev") == "cell_start"]
            ended = {e.get("i") for e in run.events if e.get("ev") == "cell_end"}
            if not started or started[-1] in ended or any(e.get("ev") == "call" for e in run.events):
                return run
            culprit, why = started[-1], "died"
        skipped.append(culprit)
        reasons.append(why)
        cells = [cell for cell in cells if cell["index"] != culprit]
    return run
