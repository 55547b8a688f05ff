"""The runner: the trusted process in the sandbox that supervises the kernel and reports to the grader.

Started in the sandbox by :mod:`coursekit.grading.sandbox`, as root with a few
capabilities: from the fork server (:mod:`coursekit.grading.forkserver`), which
runs it as ``__main__`` with torch already imported, or as ``python -I
runner.py`` by bubblewrap (and outside it, where there is no bubblewrap). It
never runs student code:

1. reads :class:`~coursekit.grading.protocol.Setup` from stdin, limits the
   scratch file systems' inodes, writes the working copy and imports everything
   the kernel needs (NumPy, torch) while the working directory is nowhere on
   ``sys.path``;
2. forks the kernel (:mod:`coursekit.grading.kernel`), keeps itself off the OOM
   killer's list and drops every capability but ``CAP_KILL``;
3. sends the kernel one cell at a time and waits for its report, timing the
   step from the moment it was sent by the kernel's CPU and the wall clock, and
   kills the kernel when the step outlives either limit by the grace;
4. after the last cell, reports :class:`~coursekit.grading.protocol.CellsDone`
   and only then reads the hidden calls (the grader sends them no earlier), and
   runs the adapters and the calls the same way, one at a time: each call in
   the names as they stood after its question's test cell (the grader's
   ``Calls.scopes``; the kernel keeps them after each cell the grader marked
   ``snapshot``), the adapters once in each such scope before its first call.

Before anything else, a runner started in bubblewrap reads its own capability
sets and, if it holds any capability the grader did not ask for, reports
:class:`~coursekit.grading.protocol.Refused` and runs nothing.

While it waits, the runner checks the kernel's CPU time, the wall clock and
whether the kernel is alive on every pass, whatever the kernel writes: it
reads at most :data:`READ_PER_TICK` bytes of reports per tick, accepts a report
only for the step it just sent, drops a call's report longer than the call's
cap as it reads it, and kills a kernel that writes more than
:data:`MAX_UNAWAITED_LINES` lines it did not wait for. Each step's event
carries what the runner measured: the step's CPU and wall-clock time, and how
it ended (:class:`~coursekit.grading.protocol.StepEnd`): at a time limit or at
the address-space limit only where the runner measured that limit reached
(and, for a time limit in a call, the kernel's timer stopped it),
killed, or ended by a signal; the grader's outcomes and reruns read only that,
never the exception a cell names. A step's end is still
the kernel's word: code that forges its own cell's report ends that step
early and may go on computing into the following steps' limits (never beyond
their sum, nor the submission's budget), while the cells it claimed to run
are never run.

Every event the grader acts on comes from here, on this process's stdout,
which the kernel cannot reach; what the kernel reports is capped and checked
before it is relayed. When the kernel dies or is killed, the runner says in
which step and exits: the grader decides whether to try again without it.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import ctypes
import os
import select
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Callable, NoReturn

if __name__ == "__main__":
    # Run as a script from the assignment's view of the package: import coursekit from there.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from coursekit.grading import protocol  # noqa: E402
from coursekit.grading.protocol import (AdapterReport, CallEnd, CallReport, CallStart, Calls,  # noqa: E402
                                        CallStatus, CellEnd, CellReport, CellsDone, CellStart, CellStatus, Done,
                                        Ready, Refused, RunAdapter, RunCall, RunCell, Setup, StepEnd)
from coursekit.grading.result_budget import wire_size  # noqa: E402
from coursekit.grading.uids import kernel_uid  # noqa: E402

#: how often, at the least, the runner checks the kernel's CPU time and whether it is still alive.
TICK_S = 0.2
#: bytes moved through a pipe at a time.
PIPE_CHUNK = 1 << 16
#: most report bytes read from the kernel per tick: a flood slows the kernel, not the runner's checks.
READ_PER_TICK = 8 << 20
#: lines the kernel may write that are not the report awaited (forgeries, floods) before it is killed.
MAX_UNAWAITED_LINES = 1000
#: most bytes read from the pipe of a kernel that ended (an unprivileged pipe holds at most 1 MiB).
DRAIN_BYTES = 2 << 20
#: what the kernel may report about a graded call; any other status is the student's invention.
KERNEL_CALL_STATUSES = {CallStatus.OK, CallStatus.RAISED, CallStatus.TIMEOUT, CallStatus.OUT_OF_MEMORY,
                        CallStatus.BANNED, CallStatus.WITHHELD, CallStatus.NOT_RUN}
#: the runner's OOM score: never chosen by the memory cgroup's OOM killer, where the runner has
#: CAP_SYS_RESOURCE (a host whose root lacks it leaves the score as it is: see :mod:`~coursekit.grading.bwrap`).
OOM_SCORE = -1000
# Linux constants (sys/mount.h, linux/capability.h).
MS_NOSUID, MS_NODEV, MS_REMOUNT = 2, 4, 32
CAPABILITY_VERSION_3 = 0x20080522
CAP_KILL = 5
SCRATCH_MOUNTS = ("/tmp", "/home/student")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: how close to its address-space limit the kernel's peak must rise in a failed step for the step to
#: count as having reached it: an allocation fails when it asks for more than the room left, so after
#: a hog's last refused allocation the peak is short of the limit by less than that allocation.
MEMORY_MARGIN_FRACTION = 1 / 16
MEMORY_MARGIN_MIN_BYTES = 64 * 2**20
#: how many margins below the limit a step must start for a cell's kept memory to count as released: a
#: ``del`` of a few tens of MiB after a hog that ended just inside the margin leaves the memory taken.
RELEASE_MARGINS = 2


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def keep_only_capability(capability: int) -> None:
    """Drop every capability of this process but ``capability`` (irreversibly: the runner never execs)."""
    header = _CapHeader(CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    data[capability // 32].effective = data[capability // 32].permitted = 1 << (capability % 32)
    if _libc().capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def capability_sets(status: dict[str, str] | None = None) -> dict[str, int]:
    """This process's capability sets (``CapEff``, ``CapPrm``, ...) as bit masks, from ``/proc/self/status``."""
    fields = _status_fields(os.getpid()) if status is None else status
    return {key: int(value, 16) for key, value in fields.items() if key.startswith("Cap")}


def excess_capabilities(requested: int, status: dict[str, str] | None = None) -> int:
    """The effective or permitted capability bits this process holds beyond ``requested`` (0: none).

    Example:
        >>> excess_capabilities(0b101, {"CapEff": "0000000000000007", "CapPrm": "0000000000000005"})
        2
    """
    sets = capability_sets(status)
    return (sets.get("CapEff", 0) | sets.get("CapPrm", 0)) & ~requested


def limit_scratch_inodes(disk_mb: int, inodes: int) -> None:
    """Remount the scratch tmpfs mounts with an inode limit (bubblewrap can set only their size).

    Each file costs kernel memory that a tmpfs's size does not count.
    """
    options = f"size={int(disk_mb) * 2**20},nr_inodes={int(inodes)}".encode()
    for target in SCRATCH_MOUNTS:
        if _libc().mount(b"tmpfs", target.encode(), b"tmpfs", MS_REMOUNT | MS_NOSUID | MS_NODEV, options) != 0:
            raise OSError(ctypes.get_errno(), f"cannot remount {target} with an inode limit")


def write_working_copy(setup: Setup) -> None:
    """Write the submitted files and hand them to the uid the kernel will run as."""
    workdir = Path(setup.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for relative, data in setup.files.items():
        target = workdir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(data))
    uid = kernel_uid(setup.uid)
    if uid is not None and os.getuid() == 0:
        for root, dirs, files in os.walk(workdir):
            for entry in dirs + files:
                os.chown(os.path.join(root, entry), uid, uid)
        os.chown(workdir, uid, uid)


def _process_cpu_clock(pid: int) -> int:
    """The id of process ``pid``'s profiling CPU clock (Linux's ``MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_PROF)``).

    That clock is the sum of the user and system times charged to the process
    at each timer tick, the count ``ITIMER_PROF`` fires on. It is not the
    scheduler's exact run time (``clock_getcpuclockid``'s clock, encoded with
    ``| 2``): a loop that shares the CPU with processes that wake often is
    charged whole ticks it only partly ran, so its timer fires when the
    scheduler's clock reads a few per cent short of the limit (1.93 s for a
    2 s timer beside six busy sleepers on a 2-core machine).
    """
    return (~pid << 3) | 0


def _cpu_seconds(pid: int) -> float:
    """CPU time (user and system, all threads) of process ``pid`` itself (0 once it is gone).

    Read from the process's profiling clock, the count the kernel's own CPU
    timer (``ITIMER_PROF``) follows (see ``_process_cpu_clock``), so a
    step its timer stopped reads at least its limit; ``/proc``'s times, the
    fallback, are scaled to the scheduler's count and can read short.
    The processes it forks are not counted, as the kernel's own CPU timer does
    not count them: their share of the machine is the cgroup's to bound, and a
    step that waits for them is stopped by the wall clock.
    """
    try:
        return time.clock_gettime(_process_cpu_clock(pid))
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _status_fields(pid: int) -> dict[str, str]:
    """``/proc/<pid>/status`` as a dict (empty once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            return dict((key, value.strip()) for key, _, value in (line.partition(":") for line in handle))
    except OSError:
        return {}


def _address_space(pid: int, field: str = "VmSize") -> int:
    """Process ``pid``'s address space now (``VmSize``) or its largest ever (``VmPeak``), in bytes; 0 once it is gone."""
    size = _status_fields(pid).get(field, "0 kB").split()[0]
    return int(size) * 1024 if size.isdigit() else 0


def _address_space_limit(pid: int) -> int | None:
    """Process ``pid``'s soft ``RLIMIT_AS`` in bytes, from ``/proc/<pid>/limits`` (``None``: unlimited or unknown)."""
    try:
        with open(f"/proc/{pid}/limits") as handle:
            for line in handle:
                if line.startswith("Max address space"):
                    soft = line[len("Max address space"):].split()[0]
                    return int(soft) if soft.isdigit() else None
    except OSError:
        return None
    return None


def step_memory_peak(samples: int, end: int, peak_before: int, peak_after: int) -> int:
    """The largest address space a step is known to have had, from the runner's readings of ``/proc`` (bytes).

    The runner samples the kernel's ``VmSize`` every time it looks at the
    pipes (at most :data:`TICK_S` apart: ``samples`` is the largest), and once
    when the step ends (``end``). A rise of the lifetime ``VmPeak`` during the
    step (``peak_before`` to ``peak_after``) is exact: it catches a spike
    shorter than a tick whenever the step set a new lifetime peak. A step whose
    peak stayed below an earlier step's counts only what was sampled: a
    lifetime peak says nothing about the step after it.

    Args:
        samples: the largest ``VmSize`` sampled during the step.
        end: ``VmSize`` when the step ended.
        peak_before, peak_after: ``VmPeak`` when the step started and when it ended.

    Returns:
        The step's peak in bytes.

    Example:
        >>> mib = 2**20
        >>> step_memory_peak(300 * mib, 200 * mib, 900 * mib, 1000 * mib)   # a new lifetime peak: exact
        1048576000
        >>> step_memory_peak(300 * mib, 200 * mib, 1000 * mib, 1000 * mib)  # below an earlier step's peak
        314572800
    """
    return max(samples, end, peak_after if peak_after > peak_before else 0)


def near_memory_limit(size: int, limit: int | None, margins: int = 1) -> bool:
    """Whether an address space of ``size`` bytes is within ``margins`` margins of ``limit`` (``None``: no limit).

    Example:
        >>> gib = 2**30
        >>> near_memory_limit(gib - 2**20, gib), near_memory_limit(gib // 2, gib), near_memory_limit(gib, None)
        (True, False, False)
        >>> near_memory_limit(gib - 100 * 2**20, gib), near_memory_limit(gib - 100 * 2**20, gib, margins=2)
        (False, True)
    """
    if limit is None:
        return False
    return size >= limit - margins * max(MEMORY_MARGIN_MIN_BYTES, int(limit * MEMORY_MARGIN_FRACTION))


def started_near_memory_limit(pid: int, size: int) -> bool:
    """Whether process ``pid``, whose address space was just read as ``size`` bytes, is near its memory limit as a
    step is sent to it: within :data:`RELEASE_MARGINS` margins, so that only a step that starts well below the
    limit shows an earlier cell's kept memory released (see :mod:`~coursekit.grading.reruns`). A
    kernel already gone reads as 0 with no limit: nothing was measured, so it counts as near.

    Example:
        >>> started_near_memory_limit(2**22 + 1, 0)   # no such process
        True
    """
    if size == 0:
        return True
    return near_memory_limit(size, _address_space_limit(pid), margins=RELEASE_MARGINS)


def _failure_size(report: Any, lifetime_peak: int) -> int:
    """A failed cell's address space as its exception reached the kernel, no larger than the kernel ever had.

    The polls miss a spike shorter than a tick once an earlier step has set a
    higher lifetime ``VmPeak``; the kernel reads its ``VmSize`` as the
    exception arrives, while the unwound frames still hold their memory (see
    :class:`~coursekit.grading.protocol.CellReport`). That is the kernel's
    word, so it only ever labels a failed step of its own at the limit, never
    past what ``/proc`` shows the process reached; whether memory was held is
    the runner's reading alone.

    Example:
        >>> _failure_size(CellReport(0, True, memory_at_failure=5 * 2**30), 2**30) == 2**30
        True
    """
    if not isinstance(report, CellReport) or not report.failed:
        return 0
    return max(0, min(report.memory_at_failure, lifetime_peak))


@dataclass
class StepResult:
    """What became of one command: the kernel's report, or how the kernel ended, and what the runner measured.

    ``died`` covers a kernel that exited or was killed by a signal, and one the
    runner killed for flooding it with lines it did not wait for (``flooded``).
    A call whose report is longer than its bound is ``too_large``: the kernel
    lives on, and the report is dropped as it arrives, never decoded.

    Attributes:
        cpu_s, wall_s: the kernel's CPU time and the wall-clock time of the step.
        signal: the signal that ended the kernel, when one the runner did not send did.
        at_memory_limit: the kernel's address space rose to within the margin of its limit during the
            step (see :func:`step_memory_peak`).
        memory_held: the kernel's address space was near its limit when it reported, and was not when
            the step started: what the step allocated was kept, not freed when its exception unwound
            (:func:`cell_end` relays it for a failed cell only).
        started_near_limit: the kernel's address space was already near its limit when the step was
            sent (or the kernel was already gone: :func:`started_near_memory_limit`). A step that starts
            below it shows that whatever an earlier cell kept is gone (see :mod:`~coursekit.grading.reruns`).
    """

    report: Any = None
    died: bool = False
    stalled: bool = False
    flooded: bool = False
    too_large: bool = False
    cpu_s: float = 0.0
    wall_s: float = 0.0
    signal: int = 0
    at_memory_limit: bool = False
    memory_held: bool = False
    started_near_limit: bool = False

    def ended(self, failed: bool, limits: dict[str, Any], timed_out: bool | None = None) -> StepEnd:
        """How the step ended, as the runner measured it.

        A failed report counts as a limit only where the runner measured the
        limit reached (:func:`~coursekit.grading.protocol.reached_time_limit`,
        :func:`near_memory_limit`): the exception the kernel names is the
        student's choice. A cell that fails at its time limit ended there
        whatever its exception; a call only if the kernel also reported that
        its timer stopped it (``timed_out``): a call that raised its own error
        near its limit is a raised call, as under stock autograde.

        Args:
            failed: the kernel reported a failure.
            limits: the runner's limits.
            timed_out: the kernel reported its timer stopped the step (default: ``failed``, for a cell).

        Returns:
            The step's end.

        Example:
            >>> limits = {"step_cpu_s": 1.0, "step_wall_s": 3.0}
            >>> StepResult(report=object(), cpu_s=0.1).ended(True, limits).value
            'reported'
            >>> StepResult(report=object(), cpu_s=0.95).ended(True, limits).value
            'time_limit'
            >>> StepResult(report=object(), cpu_s=0.95).ended(True, limits, timed_out=False).value
            'reported'
        """
        if self.report is None:
            if self.too_large:
                return StepEnd.TOO_LARGE
            if self.stalled:
                return StepEnd.KILLED
            if self.flooded:
                return StepEnd.FLOODED
            return StepEnd.SIGNALLED if self.signal else StepEnd.EXITED
        if not failed:
            return StepEnd.REPORTED
        if self.at_memory_limit:
            return StepEnd.MEMORY_LIMIT
        timed_out = failed if timed_out is None else timed_out
        if timed_out and protocol.reached_time_limit(self.cpu_s, self.wall_s, limits):
            return StepEnd.TIME_LIMIT
        return StepEnd.REPORTED

    def measures(self) -> dict[str, int | bool]:
        """The measured fields of a cell's or a call's event (besides ``ended`` and ``memory_held``)."""
        return {"cpu_ms": int(self.cpu_s * 1000), "wall_ms": int(self.wall_s * 1000), "signal": self.signal,
                "started_near_limit": self.started_near_limit}


def report_bounds(command: Any, limits: dict[str, Any], result_cap: int | None = None) -> tuple[int, int | None]:
    """The longest report line, and the most opening brackets in it, accepted after ``command``.

    A cell's report is flat text capped by ``output_cell``; only a call's
    report carries values (a6's run to a few MiB), bounded by the call's
    ``result_cap`` when the grader sent one (see :func:`~coursekit.grading.protocol.call_report_bytes`).

    Example:
        >>> report_bounds(RunAdapter(0, "pass"), {"output_cell": 20_000})
        (1024, 1)
    """
    if isinstance(command, RunCell):
        return protocol.cell_report_bytes(int(limits["output_cell"])), None
    if isinstance(command, RunAdapter):
        return protocol.MAX_ADAPTER_REPORT_BYTES, 1
    return protocol.call_report_bytes(result_cap), protocol.MAX_CALL_BRACKETS


class KernelProcess:
    """The kernel, from the runner's side: send it one step, then wait for that step's report under its limits."""

    def __init__(self, setup: Setup) -> None:
        commands_read, self.commands = os.pipe()
        self.reports, reports_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(self.commands)
                os.close(self.reports)
                from coursekit.grading.kernel import serve

                serve(setup, commands_read, reports_write)
            finally:
                os._exit(70)
        os.close(commands_read)
        os.close(reports_write)
        os.set_blocking(self.commands, False)
        self.pid = pid
        self.limits = setup.limits
        self.reader = protocol.LineReader()
        self.max_brackets: int | None = None
        self.refuse_oversized = False   # an over-long line ends the step as too large (a call's report)
        self.oversized_at_send = 0
        self.signal = 0                 # the signal that ended the kernel, if the runner did not send it
        self.lines: collections.deque[bytes] = collections.deque()   # read, not yet looked at
        self.pending = memoryview(b"")
        self.ignored = 0
        self.alive = True
        self.exited = False     # the kernel ended and was reaped
        self.closed = False     # the kernel closed its end of the report pipe
        self._tick_started, self._tick_bytes = time.monotonic(), 0

    def send(self, command: Any, result_cap: int | None = None) -> None:
        """Queue ``command``; it is written as the pipe drains, while :meth:`wait` watches the limits.

        Whatever the kernel wrote before is dropped unread: a report counts
        only for the command just sent. A call's report may be at most what
        ``result_cap`` allows (see :func:`report_bounds`).
        """
        self.ignored += len(self.lines)
        self.lines.clear()
        self.reader.max_line, self.max_brackets = report_bounds(command, self.limits, result_cap)
        self.refuse_oversized = isinstance(command, RunCall)
        self.oversized_at_send = self.reader.oversized
        self.pending = memoryview(protocol.encode(command))

    def wait(self, expected: Callable[[Any], bool]) -> StepResult:
        """The next report ``expected`` accepts, or how the kernel ended if it ends first.

        The step is timed from now (when its command was sent). Every pass
        checks whether the kernel is alive and within its limits, whatever it
        wrote; a kernel that stops reading its commands cannot make the runner
        wait, and lines that are not the awaited report are counted and
        dropped (past :data:`MAX_UNAWAITED_LINES`, the kernel is killed). A
        call's report past its bound ends the step once the line has been
        read to its end, unparsed (``too_large``).

        The result carries what the runner measured: the step's CPU time and
        wall-clock time, the signal that ended the kernel, and whether the
        kernel's address space was near its limit when the step was sent, came
        near it during the step, and was still near it, having started below
        it, at the end.
        """
        started, cpu_before = time.monotonic(), _cpu_seconds(self.pid)
        size_before, peak_before = _address_space(self.pid), _address_space(self.pid, "VmPeak")
        started_near_limit = started_near_memory_limit(self.pid, size_before)
        cpu_limit = float(self.limits["step_cpu_s"]) + float(self.limits["grace_s"])
        wall_limit = float(self.limits["step_wall_s"]) + float(self.limits["grace_s"])
        used, sampled = 0.0, 0

        def measured(result: StepResult) -> StepResult:
            result.cpu_s, result.wall_s = max(used, _cpu_seconds(self.pid) - cpu_before), time.monotonic() - started
            result.started_near_limit = started_near_limit
            if result.report is not None:
                limit, end, peak_after = (_address_space_limit(self.pid), _address_space(self.pid),
                                          _address_space(self.pid, "VmPeak"))
                peak = step_memory_peak(sampled, end, peak_before, peak_after)
                result.at_memory_limit = near_memory_limit(peak, limit) or near_memory_limit(
                    _failure_size(result.report, peak_after), limit)
                # Held by this step: a step that starts at the limit (after a hoarder) took nothing itself.
                result.memory_held = near_memory_limit(end, limit) and not near_memory_limit(size_before, limit)
            return result

        while True:
            report = self._awaited(expected)
            if report is not None:
                return measured(StepResult(report=report))
            if self.ignored + self.reader.oversized > MAX_UNAWAITED_LINES:
                return self._kill(measured(StepResult(died=True, flooded=True)))
            if self.refuse_oversized and self.reader.oversized > self.oversized_at_send and not self.reader.skipping:
                return measured(StepResult(too_large=True))
            if self.exited or self._reaped():
                # What it wrote before it ended still counts: read what is left in the pipe first.
                self._drain()
                report = self._awaited(expected)
                if report is not None:
                    return measured(StepResult(report=report))
                return self._ended(measured(StepResult(died=True, signal=self.signal)))
            used = _cpu_seconds(self.pid) - cpu_before
            sampled = max(sampled, _address_space(self.pid))
            if used > cpu_limit or time.monotonic() - started > wall_limit:
                return self._kill(measured(StepResult(stalled=True)))
            self._exchange()

    def _reaped(self) -> bool:
        """Whether the kernel has ended (then it is reaped, and the signal that ended it is kept)."""
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid != self.pid:
            return False
        self.exited = True
        self.signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        return True

    def _awaited(self, expected: Callable[[Any], bool]) -> Any:
        """The first line read that is a report ``expected`` accepts; the lines before it are counted and dropped."""
        while self.lines:
            line = self.lines.popleft()
            try:
                report = protocol.decode(line, protocol.REPORTS, self.reader.max_line, self.max_brackets)
            except protocol.ProtocolError:
                report = None
            if report is not None and expected(report):
                return report
            self.ignored += 1
        return None

    def _drain(self) -> None:
        """Read what an ended kernel left in the report pipe (a pipe holds at most :data:`DRAIN_BYTES`)."""
        left = DRAIN_BYTES
        while left > 0 and not self.closed and select.select([self.reports], [], [], 0)[0]:
            chunk = os.read(self.reports, min(PIPE_CHUNK, left))
            left -= len(chunk)
            self.closed = not chunk
            self.lines.extend(self.reader.feed(chunk))

    def _exchange(self) -> None:
        """Wait at most a tick for the pipes, write some of the pending command and read at most a chunk."""
        now = time.monotonic()
        if now - self._tick_started >= TICK_S:
            self._tick_started, self._tick_bytes = now, 0
        reading = not self.closed and self._tick_bytes < READ_PER_TICK
        readable, writable, _ = select.select([self.reports] if reading else [],
                                              [self.commands] if self.pending else [], [],
                                              max(0.0, self._tick_started + TICK_S - now))
        if writable:
            try:
                self.pending = self.pending[os.write(self.commands, self.pending[:PIPE_CHUNK]):]
            except BlockingIOError:
                pass  # the pipe is full: the rest is written when select reports it writable again
            except OSError:
                self.pending = memoryview(b"")  # the kernel is gone: the caller sees it exit
        if readable:
            chunk = os.read(self.reports, PIPE_CHUNK)
            self._tick_bytes += len(chunk)
            self.closed = not chunk
            self.lines.extend(self.reader.feed(chunk))

    def _kill(self, result: StepResult) -> StepResult:
        if not self.exited:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.exited = True
        return self._ended(result)

    def _ended(self, result: StepResult) -> StepResult:
        self.alive = False
        return result


def _send(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class OutputBudget:
    """Caps on what the notebook printed, per cell and in all (the kernel's own caps are the student's)."""

    def __init__(self, limits: dict[str, Any]) -> None:
        self.per_cell = int(limits["output_cell"])
        self.left = int(limits["output_total"])

    def take(self, text: str, cap: int | None = None) -> str:
        text = text[: min(self.per_cell if cap is None else cap, max(self.left, 0))]
        self.left -= len(text)
        return text

    def take_stream(self, text: str) -> tuple[str, bool]:
        """A cell's stream within the caps, and whether it was cut; a cut stream ends in the marker.

        The marker takes the place of the stream's last characters; when nothing
        is left of the notebook's total, the stream is the marker alone.

        Example:
            >>> budget = OutputBudget({"output_cell": 30, "output_total": 40})
            >>> budget.take_stream("x" * 31)
            ('xxxxxxxxxx\\n[output truncated]\\n', True)
            >>> budget.take_stream("y" * 12)
            ('\\n[output truncated]\\n', True)
            >>> budget.take_stream("")
            ('', False)
        """
        kept = self.take(text)
        if len(kept) == len(text):
            return kept, False
        kept = kept[: max(0, len(kept) - len(protocol.TRUNCATED))]
        return kept + protocol.TRUNCATED, True


def cell_end(index: int, result: StepResult, budget: OutputBudget, limits: dict[str, Any]) -> CellEnd:
    """The event for a cell, from the kernel's report (capped) or from how the kernel ended."""
    report: CellReport | None = result.report
    ended = result.ended(report is not None and report.failed, limits)
    if report is None:
        return CellEnd(index, CellStatus.STALLED if result.stalled else CellStatus.DIED, ended=ended,
                       **result.measures())
    (stdout, out_cut), (stderr, err_cut) = budget.take_stream(report.stdout), budget.take_stream(report.stderr)
    return CellEnd(
        index,
        CellStatus.ERROR if report.failed else CellStatus.OK,
        ename=report.ename,
        evalue=budget.take(report.evalue, protocol.MAX_EVALUE),
        traceback=budget.take(report.traceback, protocol.MAX_TRACEBACK),
        stdout=stdout,
        stderr=stderr,
        truncated=out_cut or err_cut,
        ended=ended,
        memory_held=report.failed and result.memory_held,
        **result.measures(),
    )


def call_end(call_id: str, result: StepResult, limits: dict[str, Any], *, banned: frozenset[str] = frozenset(),
             tripwires: frozenset[str] = frozenset(), result_cap: int | None = None) -> CallEnd:
    """The event for a graded call; a status the kernel may not claim makes the call malformed.

    The names a report lists are the student's word: only the call's ``banned``
    operators (for ``banned``) and the view's stand-ins (for ``withheld``) are
    relayed, so a graded function cannot write its hidden inputs into the
    feedback as the names of what it reached. A ``banned`` or ``withheld``
    report that names nothing known is malformed. A result past ``result_cap``
    (:func:`~coursekit.grading.result_budget.wire_size` of its value and
    gradients) is not relayed: the call is too large.
    """
    report: CallReport | None = result.report
    ended = result.ended(report is not None and report.status is not CallStatus.OK, limits,
                         timed_out=report is not None and report.status is CallStatus.TIMEOUT)
    measured = {"ended": ended, **result.measures()}
    if report is None:
        status = (CallStatus.TOO_LARGE if result.too_large else CallStatus.STALLED if result.stalled
                  else CallStatus.DIED)
        return CallEnd(call_id, status, **measured)
    if report.status not in KERNEL_CALL_STATUSES:
        return CallEnd(call_id, CallStatus.MALFORMED, **measured)
    known = {CallStatus.BANNED: banned, CallStatus.WITHHELD: tripwires}.get(report.status, frozenset())
    hits = [hit for hit in report.hits if hit in known]
    if report.status in (CallStatus.BANNED, CallStatus.WITHHELD) and not hits:
        return CallEnd(call_id, CallStatus.MALFORMED, **measured)
    if result_cap is not None and wire_size(report.value) + wire_size(report.grads) > result_cap:
        return CallEnd(call_id, CallStatus.TOO_LARGE, **measured)
    return CallEnd(call_id, report.status, report.value, report.grads, report.ename, hits,
                   report.evalue if report.status is CallStatus.RAISED else "", **measured)


def relayable(event: CallEnd) -> CallEnd:
    """``event`` if its line keeps within :data:`~coursekit.grading.protocol.MAX_LINE_BYTES`, else ``MALFORMED``.

    The kernel's report was bounded as it wrote it; encoded again here (non-ASCII
    escaped: up to 3 bytes become 6), it can grow past what the grader reads,
    and a value holding ``NaN`` cannot be encoded at all. A malformed event keeps
    what the runner measured (times, signal, how the step ended and started).
    """
    try:
        size = len(protocol.encode(event))
    except ValueError:
        size = None
    if size is not None and size <= protocol.MAX_LINE_BYTES:
        return event
    return replace(event, status=CallStatus.MALFORMED, value=None, grads=[], ename="", hits=[], evalue="")


class Events:
    """The grader's channel: this process's original stdout, which nothing else in the sandbox holds."""

    def __init__(self) -> None:
        self.fd = os.dup(1)
        os.dup2(2, 1)          # a stray print in the runner goes to the diagnostics, not into the events

    def emit(self, event: Any) -> None:
        _send(self.fd, protocol.encode(event))


def _read(stream: BinaryIO, kinds: Any) -> Any:
    return protocol.decode(stream.readline(), kinds, max_line=None)


def _finish(events: Events, kernel: KernelProcess, **stopped: Any) -> NoReturn:
    events.emit(Done(ignored_reports=kernel.ignored, **stopped))
    os._exit(0)


def _run_adapters(events: Events, kernel: KernelProcess, adapters: list[str], scope: int | None) -> None:
    """Run every adapter, in order, in ``scope``; stop the submission if the kernel ends in one."""
    for number, source in enumerate(adapters):
        kernel.send(RunAdapter(number, source, scope))
        if kernel.wait(lambda report, n=number: isinstance(report, AdapterReport) and report.index == n).report is None:
            _finish(events, kernel, stopped_in_adapter=True)


def main() -> NoReturn:
    """Run one submission; see the module docstring."""
    events = Events()
    stdin = sys.stdin.buffer
    setup: Setup = _read(stdin, protocol.SETUP)
    if setup.capabilities is not None:
        excess = excess_capabilities(setup.capabilities)
        if excess:
            # bubblewrap left more than it was asked for (it does when the host's root lacks one of them).
            events.emit(Refused(f"the runner holds capabilities it did not ask for (mask {excess:#x} beyond "
                                f"{setup.capabilities:#x}): no student code runs"))
            os._exit(0)
    if setup.sandboxed:
        limit_scratch_inodes(setup.limits["disk_mb"], setup.limits["disk_inodes"])
    write_working_copy(setup)
    # Everything the kernel runs before the first cell is imported here, from the environment only.
    import coursekit.grading.kernel  # noqa: F401

    # Lowering the score needs CAP_SYS_RESOURCE: a grader that is not root leaves it as it is.
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as handle:
        handle.write(str(OOM_SCORE))
    kernel = KernelProcess(replace(setup, files={}))
    if os.geteuid() == 0:
        keep_only_capability(CAP_KILL)
    events.emit(Ready())
    budget = OutputBudget(setup.limits)
    for cell in setup.cells:
        index = int(cell["index"])
        events.emit(CellStart(index))
        kernel.send(RunCell(index, cell["source"], bool(cell.get("snapshot", False))))
        result = kernel.wait(lambda report, i=index: isinstance(report, CellReport) and report.index == i)
        events.emit(cell_end(index, result, budget, setup.limits))
        if not kernel.alive:
            _finish(events, kernel, stopped_cell=index)
    events.emit(CellsDone())
    calls: Calls = _read(stdin, protocol.CALLS)
    adapted: set[int | None] = set()
    # (question, function) pairs with a call that timed out (protocol.stops_function, stock autograde's rule
    # too): that function is not called again for that question, whose other calls would only time out too.
    # Another question still calls it, as its own test cell does under stock autograde
    # (coursekit.course.hidden_score.call_ends, one question at a time).
    timed_out: set[tuple[str, str]] = set()
    for call in calls.calls:
        call_id = str(call["id"])
        scope = calls.scopes.get(call_id)
        timing = (protocol.call_question(call_id), str(call["name"]))
        if timing not in timed_out and scope not in adapted:
            adapted.add(scope)
            _run_adapters(events, kernel, calls.adapters, scope)
        events.emit(CallStart(call_id))
        if timing in timed_out:
            events.emit(CallEnd(call_id, CallStatus.NOT_RUN))
            continue
        cap = calls.result_caps.get(call_id)
        kernel.send(RunCall(call, scope), result_cap=cap)
        result = kernel.wait(lambda report, c=call_id: isinstance(report, CallReport) and report.call_id == c)
        ended = relayable(call_end(call_id, result, setup.limits, banned=frozenset(call.get("banned", [])),
                                   tripwires=frozenset(calls.tripwires), result_cap=cap))
        events.emit(ended)
        if protocol.stops_function(ended, setup.limits):
            timed_out.add(timing)
        if not kernel.alive:
            _finish(events, kernel, stopped_call=call_id)
    _finish(events, kernel)


if __name__ == "__main__":
    main()
