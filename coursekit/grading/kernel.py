"""The kernel: the process that runs the student's cells and graded calls, and nothing else.

The runner (:mod:`coursekit.grading.runner`) forks it after importing
everything it needs, then it locks itself in before the first cell: standard
streams to ``/dev/null``, every other descriptor closed but its two pipes,
first on the OOM killer's list, the sandbox uid, rlimits, a lower priority,
the assignment's memory budget, and only then the working directory on
``sys.path``. Then it answers the runner's commands
(:mod:`coursekit.grading.protocol`) one step at a time: a cell, or, once every
cell has run, an adapter or one graded call; one report per command.

Everything here runs in a process the student controls, so nothing here is
trusted: the runner times every step itself, caps every report, and the
grader decodes every value strictly. The timers below only stop honest code
politely. The withheld references are enforced by what is absent: the
sandbox's ``coursekit`` holds stand-ins, never the answers. The bans on
PyTorch built-ins are not: torch's kernels are all in the sandbox, and the
stand-ins that :func:`_banned` puts in the dispatcher live in this process,
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
import warnings
from typing import Any, Iterator, NoReturn

import numpy as np
import torch
import torch.library

from coursekit.grading import protocol, withheld
from coursekit.grading.protocol import (AdapterReport, CallReport, CallStatus, CellReport, RunAdapter, RunCall, RunCell,
                                        Setup)
from coursekit.grading.uids import kernel_uid
from coursekit.grading.wire import MAX_DEPTH, decode_value, encode_value

#: the kernel's niceness: the runner, which must stay responsive, wins every contention for the CPU.
NICENESS = 10
#: the kernel and everything it forks go first when the sandbox's memory cgroup is full.
OOM_SCORE = 1000
#: characters a graded call may print (its output is discarded; this only bounds the work).
CALL_OUTPUT = 200


class CellTimeout(BaseException):
    """Raised by the per-cell / per-call timer (a BaseException, so ``except Exception`` does not swallow it)."""


class BannedOperation(RuntimeError):
    """Raised when a graded call runs a PyTorch operator its question bans."""


class _Shell:
    """A stand-in for ``get_ipython()`` so notebooks that call magics do not crash."""

    def run_line_magic(self, *args: object, **kwargs: object) -> None:
        return None

    def run_cell_magic(self, *args: object, **kwargs: object) -> None:
        return None

    def system(self, *args: object, **kwargs: object) -> None:
        return None


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


def _short(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[: cap - 12] + "\n[truncated]"


def _message(error: BaseException) -> str:
    """The exception's message, capped; empty when the student's ``__str__`` itself raises."""
    try:
        return _short(str(error), protocol.MAX_EVALUE)
    except BaseException:  # noqa: BLE001 - a student's __str__ may raise anything
        return ""


def _raise_timeout(_signum: int, _frame: object) -> None:
    raise CellTimeout("time limit reached")


@contextlib.contextmanager
def _timers(cpu_s: float, wall_s: float) -> Iterator[None]:
    """Raise :class:`CellTimeout` after ``cpu_s`` seconds of this process's CPU or ``wall_s`` of wall clock."""
    signal.signal(signal.SIGPROF, _raise_timeout)
    signal.signal(signal.SIGALRM, _raise_timeout)
    signal.setitimer(signal.ITIMER_PROF, max(cpu_s, 0.01))
    signal.setitimer(signal.ITIMER_REAL, max(wall_s, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)


#: the dispatch keys a ban replaces: every CPU layout (dense, sparse COO and CSR, MKL-DNN, quantized), so
#: that converting the input (``x.to_sparse()``) does not reach the built-in kernel through another key.
BANNED_DISPATCH_KEYS = ("CPU", "SparseCPU", "SparseCsrCPU", "MkldnnCPU", "QuantizedCPU")


@contextlib.contextmanager
def _banned(operators: list[str], hits: list[str]) -> Iterator[None]:
    """Make the ATen ``operators`` (every overload) raise while the block runs, recording each attempt.

    The operators are replaced in PyTorch's dispatcher for every CPU layout,
    below every Python name, so an alias, ``getattr`` or ``torch.ops.aten``
    reaches the same stand-in; leaving the block puts the real kernels back.
    The stand-ins live in this process, so student code can remove them (see
    the module docstring): the ban deters, it does not enforce.
    """
    if not operators:
        yield
        return

    def stand_in(name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            hits.append(name)
            raise BannedOperation(f"{name} is banned in this question")
        return refuse

    library = torch.library.Library("aten", "IMPL")
    try:
        with warnings.catch_warnings():
            # Overriding an ATen kernel warns that a previous registration is replaced: that is the point.
            warnings.simplefilter("ignore")
            for name in operators:
                packet = getattr(torch.ops.aten, name)
                for overload in packet.overloads():
                    qualified = name if overload == "default" else f"{name}.{overload}"
                    for key in BANNED_DISPATCH_KEYS:
                        library.impl(qualified, stand_in(name), key)
        yield
    finally:
        library._destroy()


def _out_of_memory(error: BaseException) -> bool:
    """Whether an exception says an allocation failed (Python's MemoryError or torch's allocator)."""
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)[:2000]


def _compile_cell(source: str, index: int) -> Any:
    try:
        return compile(source, f"<cell {index}>", "exec")
    except SyntaxError:
        # Only a notebook with magics needs IPython, which is slow to import.
        from IPython.core.inputtransformer2 import TransformerManager

        transformed = TransformerManager().transform_cell(source)
        return compile(transformed, f"<cell {index}>", "exec")


def _to_plain(value: object, depth: int = 0) -> object:
    """Turn a return value into wire-encodable plain data, refusing anything unknown."""
    if depth > MAX_DEPTH:
        raise TypeError("return value nests too deeply")
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        if tensor.is_complex():
            raise TypeError("complex tensors are not accepted")
        return np.array(tensor.resolve_conj().resolve_neg().numpy(), copy=True)
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.array(value, copy=True)
        if array.dtype.kind not in "fiub":
            raise TypeError(f"arrays of dtype {array.dtype} are not accepted")
        return array
    if type(value) in (bool, int, float, str) or value is None:
        return value
    if type(value) in (list, tuple):
        return [_to_plain(item, depth + 1) for item in value]
    raise TypeError(f"unsupported return type {type(value).__name__}")


def _tensorise(value: object) -> object:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, list):
        return [_tensorise(item) for item in value]
    return value


def _argument(message: object, tensors: bool) -> object:
    value = decode_value(message)
    return _tensorise(value) if tensors else value


def _gradients(output: object, inputs: list[Any], cotangent: object) -> list[Any]:
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"a gradient was requested but the function returned {type(output).__name__}")
    grad_output = torch.as_tensor(cotangent, dtype=output.dtype)
    if grad_output.shape != output.shape:
        # A result of the wrong shape fails on its value ("wrong shape"): no backward pass to fail in instead.
        return []
    if not output.requires_grad:
        raise TypeError("a gradient was requested but the returned tensor does not depend on the inputs")
    grads = torch.autograd.grad(output, inputs, grad_outputs=grad_output, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]


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
        shell = _Shell()
        self.namespace: dict[str, Any] = {
            "__name__": "__main__",
            "__builtins__": builtins,
            "get_ipython": lambda: shell,
            "display": print,
        }

    def _timers(self) -> contextlib.AbstractContextManager[None]:
        return _timers(float(self.limits["step_cpu_s"]), float(self.limits["step_wall_s"]))

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

    def run_cell(self, index: int, source: str) -> CellReport:
        """Execute one cell, capturing what it prints."""
        cap = int(self.limits["output_cell"])
        out, err = _CappedText(cap, self.output_budget), _CappedText(cap, self.output_budget)
        failed, ename, evalue, trace = False, "", "", ""
        real_out, real_err = sys.stdout, sys.stderr
        try:
            sys.stdout, sys.stderr = out, err
            code = _compile_cell(source, index)
            with self._timers():
                exec(code, self.namespace)
        except BaseException as error:  # noqa: BLE001 - a cell may raise anything, SystemExit included
            failed = True
            ename, evalue = type(error).__name__, _short(str(error), protocol.MAX_EVALUE)
            trace = _short("".join(traceback.format_exception(type(error), error, error.__traceback__)),
                           protocol.MAX_TRACEBACK)
        finally:
            sys.stdout, sys.stderr = real_out, real_err
        self._after_step()
        return CellReport(index, failed, _short(ename, protocol.MAX_ENAME), evalue, trace, out.value(), err.value())

    def run_adapter(self, index: int, source: str) -> AdapterReport:
        """Execute an adapter of the spec; a broken notebook may break it, and then only its calls fail."""
        try:
            with self._timers():
                exec(compile(source, "<grader adapter>", "exec"), self.namespace)
        except BaseException:  # noqa: BLE001 - see the docstring
            pass
        self._after_step()
        return AdapterReport(index)

    def _evaluate(self, call: dict[str, Any]) -> tuple[object, list[Any]]:
        name = call["name"]
        if call["kind"] == "variable":
            if name not in self.namespace:
                raise NameError(f"the notebook defines no variable {name!r}")
            return self.namespace[name], []
        function = self.namespace.get(name)
        if function is None or not callable(function):
            raise NameError(f"the notebook defines no function {name!r}")
        args = [_argument(a, call["tensors"]) for a in call["args"]]
        kwargs = {k: _argument(v, call["tensors"]) for k, v in call["kwargs"].items()}
        wanted = [int(i) for i in call.get("grad_wrt", [])]
        for position in wanted:
            args[position] = args[position].requires_grad_(True)
        value = function(*args, **kwargs)
        grads = _gradients(value, [args[i] for i in wanted], decode_value(call["cotangent"])) if wanted else []
        return value, grads

    def run_call(self, call: dict[str, Any]) -> CallReport:
        """Call one graded function (or read one variable) on the runner's inputs."""
        sink = _CappedText(CALL_OUTPUT, [int(self.limits["output_total"])])
        banned_hits: list[str] = []
        reached_before = len(withheld.reached())
        status, value, grads, ename, evalue = CallStatus.OK, None, [], "", ""
        real_out, real_err = sys.stdout, sys.stderr
        try:
            sys.stdout = sys.stderr = sink
            with self._timers(), _banned(list(call.get("banned", [])), banned_hits):
                result, gradients = self._evaluate(call)
                value = encode_value(_to_plain(result))
                grads = [encode_value(_to_plain(g)) for g in gradients]
        except CellTimeout:
            status = CallStatus.TIMEOUT
        except BaseException as error:  # noqa: BLE001 - student code may raise anything
            status = CallStatus.OUT_OF_MEMORY if _out_of_memory(error) else CallStatus.RAISED
            ename = _short(type(error).__name__, protocol.MAX_ENAME)
            evalue = _message(error)
        finally:
            sys.stdout, sys.stderr = real_out, real_err
        self._after_step()
        reached = withheld.reached()[reached_before:]
        hits: list[str] = []
        if reached:
            status, hits = CallStatus.WITHHELD, sorted(set(reached))
        elif banned_hits:
            status, hits = CallStatus.BANNED, sorted(set(banned_hits))
        if status is not CallStatus.OK:
            value, grads = None, []
        return CallReport(str(call["id"]), status, value, grads, ename, hits[: protocol.MAX_NAMES], evalue)


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
        return kernel.run_cell(command.index, command.source)
    if isinstance(command, RunAdapter):
        return kernel.run_adapter(command.index, command.source)
    return kernel.run_call(command.call)
