"""The kernel: the process that runs the student's cells and graded calls, and nothing else.

The runner (:mod:`coursekit.grading.runner`) forks it after importing
everything it needs, then it locks itself in before the first cell: standard
streams to ``/dev/null``, every other descriptor closed but its two pipes,
first on the OOM killer's list, the sandbox uid, rlimits, a lower priority,
the assignment's memory budget, and only then the working directory on
``sys.path``. Then it answers the runner's commands
(:mod:`coursekit.grading.protocol`) one step at a time: a cell, or, once every
cell has run, an adapter or one graded call; one report per command. After
each test cell it keeps a shallow copy of the notebook's names, and a
question's adapters and calls run in a scope built from its cell's copy
(:mod:`coursekit.grading.snapshot`), so they score the definitions that stood
at the test cell, as stock nbgrader does.

The kernel is not IPython: a cell in IPython syntax is translated by IPython's
input transformer, and ``get_ipython()`` is
:class:`~coursekit.grading.magics.KernelShell`, which runs the magics that run
Python (``%%time``, ``%%capture``, ...) inside the cell's step and fails the
cell, naming it, on any other magic or shell command.

Everything here runs in a process the student controls, so nothing here is
trusted: the runner times every step itself, caps every report, and the
grader decodes every value strictly. The timers below only stop honest code
politely. The withheld references are enforced by what is absent: the
sandbox's ``coursekit`` holds stand-ins, never the answers. The bans on
PyTorch built-ins are not: torch's kernels are all in the sandbox, and the
stand-ins that :func:`~coursekit.grading.graded_call.banned` puts in the dispatcher live in this process,
where a cell can take them out again (patch this module, or
``torch.library``). A ban is a deterrent that stops a student who calls the
built-in, not one who sets out to switch it off. The names a report lists
(``hits``) are the student's word too: the runner and the grader keep only
names they know.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import resource
import signal
import sys
import traceback
from typing import Any, Iterator, NoReturn

from coursekit.grading import protocol, withheld
from coursekit.grading.graded_call import error_message, run_graded_call, short, timers
from coursekit.grading.magics import KernelShell, compile_cell
from coursekit.grading.protocol import (AdapterReport, CallReport, CallStatus, CellReport, RunAdapter, RunCall, RunCell,
                                        Setup)
from coursekit.grading.snapshot import question_scope, snapshot
from coursekit.grading.uids import kernel_uid

#: the kernel's niceness: the runner, which must stay responsive, wins every contention for the CPU.
NICENESS = 10
#: the kernel and everything it forks go first when the sandbox's memory cgroup is full.
OOM_SCORE = 1000
#: characters a graded call may print (its output is discarded; this only bounds the work).
CALL_OUTPUT = 200


class _CappedText:
    """A text stream that keeps at most ``cap`` characters, and no more than is left of ``budget``.

    What does not fit is counted and dropped, never raised: output past a limit
    must not stop the student's code (an honest, verbose notebook would lose
    its later answers). A stream that dropped anything ends with
    :data:`~coursekit.grading.protocol.TRUNCATED`, which makes it longer than
    ``cap``, so the runner, which decides, cuts it and flags the cell.
    """

    def __init__(self, cap: int, budget: list[int]) -> None:
        self.parts: list[str] = []
        self.kept = 0
        self.cap = cap
        self.budget = budget
        self.truncated = False

    def write(self, text: str) -> int:
        text = str(text)
        piece = text[: max(0, min(self.cap - self.kept, self.budget[0]))]
        if piece:
            self.parts.append(piece)
            self.kept += len(piece)
            self.budget[0] -= len(piece)
        self.truncated = self.truncated or len(piece) < len(text)
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False

    def value(self) -> str:
        text = "".join(self.parts)
        return text + (protocol.TRUNCATED if self.truncated else "")


def _formatted_traceback(error: BaseException) -> str:
    """The exception's traceback, capped; empty when formatting it raises (a student's ``__notes__`` property may:
    grader review r31, F3)."""
    try:
        return short("".join(traceback.format_exception(type(error), error, error.__traceback__)),
                     protocol.MAX_TRACEBACK)
    except BaseException:  # noqa: BLE001 - the exception's attributes are the student's code
        return ""


class Kernel:
    """The notebook's namespace and the commands that act on it.

    Args:
        limits: :class:`~coursekit.grading.limits.Limits` fields as plain data.
        dedicated_uid: whether the kernel runs as a uid of its own (then strays can be reaped).
    """

    def __init__(self, limits: dict[str, Any], dedicated_uid: bool) -> None:
        self.limits = limits
        self.dedicated_uid = dedicated_uid
        self.pid = os.getpid()
        self.output_budget = [int(limits["output_total"])]
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins, "display": print}
        # The magics run their bodies in the notebook's names; what ``%%capture name`` keeps is bounded like
        # everything else the notebook prints.
        shell = KernelShell(self.namespace, capture_cap=int(limits["output_total"]))
        self.namespace["get_ipython"] = lambda: shell
        #: the names after each test cell, by the cell's index; and the scopes built from them.
        self.snapshots: dict[int, dict[str, Any]] = {}
        self.scopes: dict[int, dict[str, Any]] = {}

    def _timers(self) -> contextlib.AbstractContextManager[None]:
        return timers(float(self.limits["step_cpu_s"]), float(self.limits["step_wall_s"]))

    def _after_step(self) -> None:
        # A process the student forked that returned from the cell must not go on as a second kernel.
        if os.getpid() != self.pid:
            os._exit(0)
        self._reap_strays()

    def _reap_strays(self) -> None:
        """Kill every other process of this uid (a fork bomb's survivors, background jobs).

        Only with a dedicated uid: ``kill(-1)`` then reaches this submission's
        processes and nothing else (inside the PID namespace, not even those).
        """
        if not self.dedicated_uid:
            return
        for _round in range(100):
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0] > 0:
                    continue
            if not self._others_alive():
                return

    def _others_alive(self) -> bool:
        uid = os.getuid()
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != self.pid:
                try:
                    if os.stat(f"/proc/{entry}").st_uid == uid:
                        with open(f"/proc/{entry}/stat") as handle:
                            if handle.read().rsplit(")", 1)[1].split()[0] != "Z":
                                return True
                except OSError:
                    continue
        return False

    def scope(self, index: int | None) -> dict[str, Any]:
        """The names the calls of the test cell ``index`` run in (``None``: the namespace as it is now).

        Built once per cell, from the cell's snapshot (from the namespace as it
        is now where the cell never ran: its question then scores 0 anyway).
        """
        if index is None:
            return self.namespace
        if index not in self.scopes:
            self.scopes[index] = question_scope(self.snapshots.get(index, self.namespace), self.namespace)
        return self.scopes[index]

    def run_cell(self, index: int, source: str, keep_snapshot: bool = False) -> CellReport:
        """Execute one cell, capturing what it prints; with ``keep_snapshot``, keep a copy of the names after it."""
        cap = int(self.limits["output_cell"])
        out, err = _CappedText(cap, self.output_budget), _CappedText(cap, self.output_budget)
        failed, ename, evalue, trace, at_failure = False, "", "", "", 0
        real_out, real_err = sys.stdout, sys.stderr
        try:
            sys.stdout, sys.stderr = out, err
            code = compile_cell(source, f"<cell {index}>")
            with self._timers():
                exec(code, self.namespace)
        except BaseException as error:  # noqa: BLE001 - a cell may raise anything, SystemExit included
            # Read first: the traceback's frames still hold what they allocated until ``error`` is dropped.
            at_failure = _address_space()
            failed = True
            # A student's __str__ may raise too: the cell then failed with no message (grader review r30, F6).
            ename, evalue = type(error).__name__, error_message(error)
            trace = _formatted_traceback(error)
        finally:
            sys.stdout, sys.stderr = real_out, real_err
        self._after_step()
        if keep_snapshot:
            self.snapshots[index] = snapshot(self.namespace)
        return CellReport(index, failed, short(ename, protocol.MAX_ENAME), evalue, trace, out.value(), err.value(),
                          at_failure)

    def run_adapter(self, index: int, source: str, scope: int | None = None) -> AdapterReport:
        """Execute an adapter of the spec in ``scope`` (see :meth:`scope`); a broken notebook may break it, and
        then only its calls fail."""
        try:
            with self._timers():
                exec(compile(source, "<grader adapter>", "exec"), self.scope(scope))
        except BaseException:  # noqa: BLE001 - see the docstring
            pass
        self._after_step()
        return AdapterReport(index)

    def run_call(self, call: dict[str, Any], scope: int | None = None) -> CallReport:
        """Call one graded function (or read one variable) in ``scope`` (see :meth:`scope`) on the runner's
        inputs (see :func:`run_graded_call`).

        What the call prints is discarded; a call that reached a withheld
        reference's stand-in reports ``withheld`` and the names it reached.
        """
        sink = _CappedText(CALL_OUTPUT, [int(self.limits["output_total"])])
        reached_before = len(withheld.reached())
        real_out, real_err = sys.stdout, sys.stderr
        try:
            sys.stdout = sys.stderr = sink
            report = run_graded_call(self.scope(scope), call, self._timers)
        finally:
            sys.stdout, sys.stderr = real_out, real_err
        self._after_step()
        reached = withheld.reached()[reached_before:]
        if reached:
            return CallReport(report.call_id, CallStatus.WITHHELD, None, [], report.ename,
                              sorted(set(reached))[: protocol.MAX_NAMES], report.evalue)
        return report


def _isolate(keep: tuple[int, ...]) -> None:
    """Standard streams to /dev/null; every descriptor but ``keep`` closed (the grader's channel included)."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    bounds = [2, *sorted(keep), resource.getrlimit(resource.RLIMIT_NOFILE)[0]]
    for low, high in zip(bounds, bounds[1:]):
        os.closerange(low + 1, high)


def _drop_privileges(uid: int | None) -> None:
    uid = kernel_uid(uid)
    if uid is None or os.getuid() != 0:
        return
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() == 0 or os.geteuid() == 0:
        raise RuntimeError("could not drop root privileges")


def _address_space() -> int:
    """This process's address space now, in bytes (``VmSize``)."""
    with open("/proc/self/status") as handle:
        fields = dict(line.split(":", 1) for line in handle if ":" in line)
    return int(fields["VmSize"].split()[0]) * 1024


def _apply_limits(limits: dict[str, Any]) -> None:
    def set_limit(kind: int, value: int) -> None:
        _soft, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(kind, (value, value))

    # RLIMIT_AS counts the whole address space, and the kernel starts with NumPy and torch mapped (about
    # 600 MiB): the limit is on top of that, so that ``--memory`` is what the notebook itself may use.
    set_limit(resource.RLIMIT_AS, _address_space() + int(limits["memory_mb"]) * 2**20)
    set_limit(resource.RLIMIT_NPROC, int(limits["nproc"]))
    set_limit(resource.RLIMIT_FSIZE, int(limits["fsize_mb"]) * 2**20)
    set_limit(resource.RLIMIT_CPU, int(limits["cpu_total_s"]))
    set_limit(resource.RLIMIT_NOFILE, int(limits["nofile"]))
    set_limit(resource.RLIMIT_CORE, 0)


def _apply_memory_budget(budget_mb: int | None) -> None:
    """Cap the address space at what the process uses now plus ``budget_mb`` (soft and hard).

    NumPy and torch are imported by then and no student code has run, so the
    cap measures the notebook's own use and cannot be raised again.
    """
    if budget_mb is None:
        return
    cap = _address_space() + int(budget_mb) * 2**20
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _commands(fd: int) -> Iterator[bytes]:
    with os.fdopen(fd, "rb", buffering=1 << 16) as stream:
        for line in stream:
            yield line


def _send(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def serve(setup: Setup, commands: int, reports: int) -> NoReturn:
    """Lock the process in (see the module docstring), then answer the runner's commands until it hangs up.

    Args:
        setup: the runner's setup message.
        commands: the descriptor the runner's commands arrive on.
        reports: the descriptor the reports go to.
    """
    _isolate((commands, reports))
    with open("/proc/self/oom_score_adj", "w") as handle:
        handle.write(str(OOM_SCORE))
    _drop_privileges(setup.uid)
    _apply_limits(setup.limits)
    os.nice(NICENESS)
    _apply_memory_budget(setup.memory_budget_mb)
    os.chdir(setup.workdir)
    sys.path.insert(0, setup.workdir)
    kernel = Kernel(setup.limits, setup.uid is not None)
    for line in _commands(commands):
        _send(reports, protocol.encode(run_step(kernel, protocol.decode(line, protocol.COMMANDS, max_line=None))))
    os._exit(0)


def run_step(kernel: Kernel, command: RunCell | RunAdapter | RunCall) -> CellReport | AdapterReport | CallReport:
    """Run the one step ``command`` names and return its report."""
    if isinstance(command, RunCell):
        return kernel.run_cell(command.index, command.source, command.snapshot)
    if isinstance(command, RunAdapter):
        return kernel.run_adapter(command.index, command.source, command.scope)
    return kernel.run_call(command.call, command.scope)
