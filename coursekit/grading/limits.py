"""The resource limits of one submission, and the time policy that turns them into deadlines.

Three clocks stop a submission, from the inside out:

1. the kernel's own timers: a cell or graded call is stopped when it has used
   ``timeout_s`` seconds of CPU, or :data:`WALL_PER_CPU` times that on the wall
   clock (a call that sleeps, or waits for a machine busy with other work);
2. the runner: when the kernel ignores or disables those timers, the runner
   kills it once the step outlives either limit by :attr:`Limits.grace_s`;
3. the grader: a submission has two wall-clock budgets: :attr:`Limits.wall_s`
   for the notebook's cells (and starting the sandbox), :attr:`Limits.calls_wall_s`
   for the hidden calls made after them. What the cells cost can never take the
   calls' time. The calls' budget is shared by all the submission's attempts;
   the cells' is shared by the reruns without a cell that crashed, hoarded or
   stalled (one that also gives up a graded function included), and given
   afresh to a rerun that leaves out only a graded function that crashed or
   stalled, whose cells already fitted it once (at most :data:`MAX_RESTARTS`
   reruns in all, see :mod:`~coursekit.grading.reruns`). So a submission whose
   graded calls neither crash nor stall takes at most :attr:`Limits.total_wall_s`,
   the two budgets' sum, and none takes more than :attr:`Limits.worst_wall_s`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any

from coursekit.grading import protocol

#: wall-clock seconds a step may take per second of CPU it is allowed.
WALL_PER_CPU = 3.0
#: the runner's grace past a limit before it kills a kernel that will not stop, as a fraction
#: of the limit, and at least :data:`GRACE_MIN_S` (a busy machine delivers signals late).
GRACE_FRACTION = 0.25
GRACE_MIN_S = 2.0
#: a submission's default budgets: this many times the per-step limit for the cells (plus start-up),
#: and as many for the hidden calls (plus a base: a6's 51 calls take about 28 s whatever the limit).
SUBMISSION_STEPS = 4
SUBMISSION_START_S = 30.0
CALLS_BASE_S = 30.0
#: the most times a submission is run again after its kernel died or stalled (see :mod:`~coursekit.grading.reruns`).
MAX_RESTARTS = 3
#: the budgets that may be left to their defaults (``None``).
OPTIONAL_BUDGETS = ("submission_timeout_s", "calls_timeout_s")
#: the least ``memory_mb`` accepted: room for a notebook's own tensors beyond the imports.
MIN_MEMORY_MB = 512
#: memory the runner, bubblewrap and the kernel's shared imports (torch) need besides the kernel's own limit (a
#: runner forked from the fork server shares the server's torch pages, charged to the grader: more room is left).
RUNNER_MEMORY_MB = 512
#: processes the runner, bubblewrap and the fork server's placeholder need besides the kernel's ``nproc``.
RUNNER_PROCESSES = 16
#: the most ``output_cell`` accepted: the kernel's report of a cell carries that many characters of each stream
#: and, when it cut one, :data:`~coursekit.grading.protocol.TRUNCATED` after them, and the runner refuses a stream
#: longer than :data:`~coursekit.grading.protocol.MAX_STREAM` (an honest verbose cell would then count as a
#: protocol error, and its submission as ``kernel_died``: grader review r11, F7).
MAX_OUTPUT_CELL = protocol.MAX_STREAM - len(protocol.TRUNCATED)
#: the most ``output_total`` accepted: the grader holds a running submission's output in memory and writes it into
#: the autograded notebook, which formgrader and the feedback render, so it is kept to the size of the largest
#: notebook the grader accepts by default (``GradeOptions.max_notebook_bytes``), ten times the default total.
MAX_OUTPUT_TOTAL = 20_000_000
#: the most ``diagnostics_bytes`` accepted: the grader holds them in memory for each running submission, and shows
#: only their end (``diagnostics.SHOWN_CHARS`` characters, see :func:`~coursekit.grading.diagnostics.stderr_tail`).
MAX_DIAGNOSTICS_BYTES = 16 * 2**20
#: the most MiB accepted for a memory or disk size: 16 TiB, far past any machine, whose bytes (and the sandbox's
#: sum of them) still fit the 64-bit limits setrlimit and the cgroup files take (a larger one failed in every
#: kernel instead of as a usage error: grader review r12, finding R6).
MAX_SIZE_MB = 2**24
#: the most open files accepted: Linux's default ``fs.nr_open``, above which no process may open files (the
#: kernel lowers a larger limit to the hard limit it inherits).
MAX_NOFILE = 2**20
#: the most processes accepted: Linux's largest ``pid_max`` (2**22) less the runner's own, since a cgroup's
#: ``pids.max`` refuses more than that (review r13, N5).
MAX_PROCESSES = 2**22 - 64
#: the most inodes accepted for the scratch space: far past what its memory could hold (each inode costs kernel
#: memory), and within what a tmpfs's ``nr_inodes`` takes on any kernel (1e20 was refused, failing every run).
MAX_INODES = 2**32 - 1
#: the fields that hold counts or sizes, each with the least and the most it accepts (``None``: no most) and why.
INT_FIELDS: dict[str, tuple[int, int | None, str]] = {
    "memory_mb": (MIN_MEMORY_MB, MAX_SIZE_MB,
                  "MiB a notebook may use beyond what Python, NumPy and torch map at the start"),
    "nproc": (1, MAX_PROCESSES, "Linux's largest pid_max, less the runner's processes"),
    "fsize_mb": (1, MAX_SIZE_MB, "MiB"),
    # 0 would not be an empty scratch space: a tmpfs of size 0 has no size limit.
    "disk_mb": (1, MAX_SIZE_MB, "MiB"),
    "disk_inodes": (1, MAX_INODES, "inodes of the scratch space"),
    "nofile": (1, MAX_NOFILE, "Linux's default fs.nr_open"),
    "output_cell": (1, MAX_OUTPUT_CELL, "characters of each stream the protocol carries, less the truncation marker"),
    "output_total": (1, MAX_OUTPUT_TOTAL, "characters the grader keeps of a submission's output"),
    "diagnostics_bytes": (1, MAX_DIAGNOSTICS_BYTES, "bytes the grader keeps of each sandbox's stderr"),
}
#: the fields that hold seconds or CPUs, each a positive finite number.
REAL_FIELDS = ("timeout_s", "submission_timeout_s", "calls_timeout_s", "cpus")
#: the most each accepts: a week of seconds (far past any notebook; 1e18 overflowed setrlimit and setitimer in
#: every kernel: review r13, N4), and 1024 CPUs (a cgroup's quota is that many periods).
MAX_REAL = {"timeout_s": 604_800.0, "submission_timeout_s": 604_800.0, "calls_timeout_s": 604_800.0, "cpus": 1024.0}


@dataclass(frozen=True)
class Limits:
    """Resource limits for one submission.

    Every field is checked when the limits are made: the times and ``cpus`` must be positive finite numbers
    (:data:`REAL_FIELDS`), the counts and sizes ints within :data:`INT_FIELDS`' bounds (``memory_mb`` at least
    :data:`MIN_MEMORY_MB`, the output caps at most :data:`MAX_OUTPUT_CELL`, :data:`MAX_OUTPUT_TOTAL` and
    :data:`MAX_DIAGNOSTICS_BYTES`, the others at least 1). A float such as 0.5 is refused where an int is
    expected: the sandbox would truncate it, and 0 means no fork at all (``nproc``) or no size limit (``disk_mb``).

    Attributes:
        timeout_s: CPU seconds for each cell and each graded call (see the module docstring).
        submission_timeout_s: wall-clock seconds for the notebook's cells, shared by the reruns
            without a cell and given afresh to a rerun without a graded function alone (see
            :attr:`worst_wall_s`); ``None`` means ``SUBMISSION_STEPS * timeout_s + SUBMISSION_START_S``.
        calls_timeout_s: wall-clock seconds for the hidden calls, all attempts together;
            ``None`` means ``SUBMISSION_STEPS * timeout_s + CALLS_BASE_S``.
        memory_mb: address space (MiB) every process of the kernel may map beyond what the kernel
            maps when it starts (Python, NumPy, torch: about 600 MiB); its ``RLIMIT_AS`` is the sum.
        nproc: processes and threads the sandbox uid may have (RLIMIT_NPROC).
        fsize_mb: largest file a process may write (RLIMIT_FSIZE).
        disk_mb: size of each of the two scratch file systems (working copy, /tmp).
        disk_inodes: files and directories each scratch file system may hold.
        nofile: open file descriptors per process.
        cpus: CPUs the whole sandbox may use at once (its cgroup's CPU quota).
        output_cell: characters of output kept per cell in the autograded notebook (each stream).
        output_total: characters of output kept for the whole notebook.
        diagnostics_bytes: bytes of the runner's own stderr kept for the grader's log (its last ones).

    Raises:
        ValueError: a field out of its range; the message names the field, the value and the range.

    Example:
        >>> Limits(fsize_mb=0.5)
        Traceback (most recent call last):
        ...
        ValueError: Limits.fsize_mb must be a positive int of at most 16777216 (MiB), got 0.5
        >>> Limits(output_cell=2_000_000)
        Traceback (most recent call last):
        ...
        ValueError: Limits.output_cell must be a positive int of at most 999980 (...), got 2000000
    """

    timeout_s: float = 30.0
    submission_timeout_s: float | None = None
    calls_timeout_s: float | None = None
    memory_mb: int = 2048
    nproc: int = 256
    fsize_mb: int = 64
    disk_mb: int = 256
    disk_inodes: int = 16_384
    nofile: int = 256
    cpus: float = 1.0
    output_cell: int = 20_000
    output_total: int = 2_000_000
    diagnostics_bytes: int = 100_000

    def __post_init__(self) -> None:
        for name in REAL_FIELDS:
            value = getattr(self, name)
            if value is None and name in OPTIONAL_BUDGETS:
                continue
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf
                    or value > MAX_REAL[name]):
                raise ValueError(f"Limits.{name} must be a positive finite number of at most {MAX_REAL[name]:g}, "
                                 f"got {value!r}")
        for name, (least, most, meaning) in INT_FIELDS.items():
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least
                    or most is not None and value > most):
                raise ValueError(f"Limits.{name} must be {_int_range(least, most, meaning)}, got {value!r}")
            # A NumPy int becomes a plain one: the limits travel as JSON to the runner and pickled to Dask.
            object.__setattr__(self, name, int(value))

    @property
    def wall_s(self) -> float:
        """The wall-clock budget in seconds of the notebook's cells (and the sandbox's start).

        A rerun without a cell shares it with the attempt before; a rerun that leaves out a graded
        function alone gets it afresh (see :attr:`worst_wall_s`).

        Example:
            >>> Limits(timeout_s=5).wall_s
            50.0
        """
        if self.submission_timeout_s is not None:
            return float(self.submission_timeout_s)
        return SUBMISSION_STEPS * float(self.timeout_s) + SUBMISSION_START_S

    @property
    def calls_wall_s(self) -> float:
        """The wall-clock budget in seconds of the hidden calls (adapters included), all attempts together.

        Example:
            >>> Limits(timeout_s=5).calls_wall_s, Limits(calls_timeout_s=7).calls_wall_s
            (50.0, 7.0)
        """
        if self.calls_timeout_s is not None:
            return float(self.calls_timeout_s)
        return SUBMISSION_STEPS * float(self.timeout_s) + CALLS_BASE_S

    @property
    def total_wall_s(self) -> float:
        """Both budgets: the most wall-clock seconds one attempt, or a submission none of whose graded calls
        crashed or stalled, can take in its sandboxes.

        Example:
            >>> Limits().total_wall_s
            300.0
        """
        return self.wall_s + self.calls_wall_s

    @property
    def worst_wall_s(self) -> float:
        """The most wall-clock seconds any submission can take in its sandboxes, reruns included.

        The cells' budget is given afresh only to a rerun that leaves out only a graded function that crashed or stalled, and
        there are at most :data:`MAX_RESTARTS` reruns; the calls' budget is shared by every attempt.

        Example:
            >>> Limits().worst_wall_s
            750.0
        """
        return (1 + MAX_RESTARTS) * self.wall_s + self.calls_wall_s

    @property
    def step_wall_s(self) -> float:
        """Wall-clock seconds one cell or graded call may take.

        Example:
            >>> Limits(timeout_s=5).step_wall_s
            15.0
        """
        return WALL_PER_CPU * float(self.timeout_s)

    @property
    def grace_s(self) -> float:
        """How far past a limit the runner lets a step run before it kills the kernel.

        Example:
            >>> Limits(timeout_s=30).grace_s, Limits(timeout_s=3).grace_s
            (7.5, 2.0)
        """
        return max(GRACE_MIN_S, GRACE_FRACTION * float(self.timeout_s))

    @property
    def sandbox_memory_mb(self) -> int:
        """Memory the whole sandbox may hold (its cgroup's limit): the kernel, the scratch
        file systems and the runner, kernel memory (inodes, pipes, memfd) included."""
        return int(self.memory_mb) + 2 * int(self.disk_mb) + RUNNER_MEMORY_MB

    @property
    def sandbox_processes(self) -> int:
        """Processes and threads the whole sandbox may have (its cgroup's pids limit)."""
        return int(self.nproc) + RUNNER_PROCESSES

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for a Dask worker)."""
        return asdict(self)

    def for_runner(self) -> dict[str, Any]:
        """What the runner and the kernel need to know, as plain data.

        ``cpu_total_s`` is the kernel's RLIMIT_CPU: more than one attempt (one kernel)
        could use within its wall-clock budgets, a last line if every timer failed.
        """
        return {
            "step_cpu_s": float(self.timeout_s),
            "step_wall_s": self.step_wall_s,
            "grace_s": self.grace_s,
            "cpu_total_s": int(self.total_wall_s) + 5,
            "memory_mb": int(self.memory_mb),
            "nproc": int(self.nproc),
            "fsize_mb": int(self.fsize_mb),
            "disk_mb": int(self.disk_mb),
            "disk_inodes": int(self.disk_inodes),
            "nofile": int(self.nofile),
            "output_cell": int(self.output_cell),
            "output_total": int(self.output_total),
        }


def _int_range(least: int, most: int | None, meaning: str) -> str:
    """The ints from ``least`` to ``most``, in words (``meaning`` in brackets).

    Example:
        >>> _int_range(1, None, ""), _int_range(512, None, "MiB")
        ('a positive int', 'an int of at least 512 (MiB)')
    """
    words = "a positive int" if least == 1 else f"an int of at least {least}"
    if most is not None:
        words += f" of at most {most}" if least == 1 else f" and at most {most}"
    return words + (f" ({meaning})" if meaning else "")
