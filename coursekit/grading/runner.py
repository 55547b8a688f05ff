"""The process that runs one submission inside the sandbox.

Started by :mod:`coursekit.grading.sandbox` as ``python -E -s runner.py``. It
reads one job (JSON) from stdin, writes the working copy's files, drops to the
sandbox uid, applies its rlimits, executes the student's cells one by one (each
under a timer, with stdout/stderr captured and capped), then calls the named
functions on the grader's inputs and writes every result to the event channel
(a pipe whose descriptor number the job names) as one JSON line.

Nothing here decides a score. Student code runs in this same process and can
rewrite anything in it, the channel included; the grader therefore only trusts
raw numbers that it decodes strictly and compares itself, so the most a forged
message can do is repeat what a correct function would have returned, or make
the submission lose points.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import signal
import sys
import traceback
from typing import Any

_SAFE_FD = 201
TEXT_CAP = 4000


class CellTimeout(BaseException):
    """Raised by the per-cell / per-call timer (a BaseException, so ``except Exception`` does not swallow it)."""


class OutputLimitExceeded(BaseException):
    """Raised when a cell writes more than its share of output."""


class _Shell:
    """A stand-in for ``get_ipython()`` so notebooks that call magics do not crash."""

    def run_line_magic(self, *args: object, **kwargs: object) -> None:
        return None

    def run_cell_magic(self, *args: object, **kwargs: object) -> None:
        return None

    def system(self, *args: object, **kwargs: object) -> None:
        return None


class _CappedText:
    """A text stream that keeps at most ``cap`` characters and raises past ``hard_cap``."""

    def __init__(self, cap: int, budget: list[int]) -> None:
        self.parts: list[str] = []
        self.kept = 0
        self.cap = cap
        self.budget = budget
        self.truncated = False

    def write(self, text: str) -> int:
        text = str(text)
        self.budget[0] -= len(text)
        if self.kept < self.cap:
            piece = text[: self.cap - self.kept]
            self.parts.append(piece)
            self.kept += len(piece)
        if len(text) and self.kept >= self.cap:
            self.truncated = True
        if self.budget[0] < 0:
            raise OutputLimitExceeded("output limit exceeded")
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False

    def value(self) -> str:
        text = "".join(self.parts)
        return text + ("\n[output truncated]\n" if self.truncated else "")


class _Channel:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def emit(self, event: dict[str, Any]) -> None:
        data = (json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n").encode()
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]


def _short(text: str, cap: int = TEXT_CAP) -> str:
    return text if len(text) <= cap else text[:cap] + "\n[truncated]"


def _alarm(_signum: int, _frame: object) -> None:
    raise CellTimeout("time limit reached")


def _arm(seconds: float) -> None:
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))


def _disarm() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)


def _reap_strays(dedicated_uid: bool) -> None:
    """Kill every other process of this uid (a fork bomb's survivors, background jobs).

    Only with a dedicated uid: ``kill(-1)`` then reaches this submission's
    processes and nothing else (inside the PID namespace, not even those).
    """
    if not dedicated_uid:
        return
    for _round in range(100):
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                continue
        if not _others_alive():
            return


def _others_alive() -> bool:
    me, uid = os.getpid(), os.getuid()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    with open(f"/proc/{entry}/stat") as handle:
                        if handle.read().rsplit(")", 1)[1].split()[0] != "Z":
                            return True
            except OSError:
                continue
    return False


def _drop_privileges(uid: int | None) -> None:
    if uid is None or os.getuid() != 0:
        return
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() == 0 or os.geteuid() == 0:
        raise RuntimeError("could not drop root privileges")


def _apply_limits(limits: dict[str, Any]) -> None:
    import resource

    def set_limit(kind: int, value: int) -> None:
        soft, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(kind, (value, value))

    set_limit(resource.RLIMIT_AS, int(limits["memory_mb"]) * 1024 * 1024)
    set_limit(resource.RLIMIT_NPROC, int(limits["nproc"]))
    set_limit(resource.RLIMIT_FSIZE, int(limits["fsize_mb"]) * 1024 * 1024)
    set_limit(resource.RLIMIT_CPU, int(limits["cpu_s"]))
    set_limit(resource.RLIMIT_NOFILE, int(limits["nofile"]))
    set_limit(resource.RLIMIT_CORE, 0)


def _apply_memory_budget(budget_mb: object) -> None:
    """Cap the address space at what the process uses now plus ``budget_mb`` (soft and hard).

    Called after NumPy and torch are imported and before any student code, so
    the cap measures the notebook's own use and cannot be raised again.
    """
    import resource

    if budget_mb is None:
        return
    with open("/proc/self/status") as handle:
        fields = dict(line.split(":", 1) for line in handle if ":" in line)
    in_use = int(fields["VmSize"].split()[0]) * 1024
    cap = in_use + int(budget_mb) * 1024 * 1024
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _out_of_memory(error: BaseException) -> bool:
    """Whether an exception says an allocation failed (Python's MemoryError or torch's allocator)."""
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)[:2000]


def _compile_cell(source: str, index: int) -> Any:
    try:
        return compile(source, f"<cell {index}>", "exec")
    except SyntaxError:
        from IPython.core.inputtransformer2 import TransformerManager

        transformed = TransformerManager().transform_cell(source)
        return compile(transformed, f"<cell {index}>", "exec")


def _to_plain(value: object, depth: int = 0) -> object:
    """Turn a return value into wire-encodable plain data, refusing anything unknown."""
    import numpy as np

    if depth > 3:
        raise TypeError("return value nests too deeply")
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.dtype in (torch.bfloat16,):
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


def _from_wire(message: object, make_tensors: bool) -> object:
    from coursekit.grading.wire import decode_value

    value = decode_value(message)
    if make_tensors:
        return _tensorise(value)
    return value


def _tensorise(value: object) -> object:
    import numpy as np

    if isinstance(value, np.ndarray):
        import torch

        return torch.from_numpy(value.copy())
    if isinstance(value, list):
        return [_tensorise(item) for item in value]
    return value


def _run_cells(job: dict[str, Any], namespace: dict[str, Any], channel: _Channel, runner_pid: int) -> None:
    limits = job["limits"]
    budget = [int(limits["output_total"])]
    real_out, real_err = sys.stdout, sys.stderr
    for cell in job["cells"]:
        index = int(cell["index"])
        channel.emit({"ev": "cell_start", "i": index})
        out = _CappedText(int(limits["output_cell"]), budget)
        err = _CappedText(int(limits["output_cell"]), budget)
        status, ename, evalue, trace = "ok", "", "", ""
        try:
            sys.stdout, sys.stderr = out, err
            code = _compile_cell(cell["source"], index)
            _arm(float(limits["cell_timeout"]))
            exec(code, namespace)
        except BaseException as error:  # noqa: BLE001 - a cell may raise anything, SystemExit included
            status = "error"
            ename, evalue = type(error).__name__, _short(str(error), 500)
            trace = _short("".join(traceback.format_exception(type(error), error, error.__traceback__)))
        finally:
            _disarm()
            sys.stdout, sys.stderr = real_out, real_err
        if os.getpid() != runner_pid:
            os._exit(0)
        _reap_strays(job.get("uid") is not None)
        channel.emit(
            {
                "ev": "cell_end",
                "i": index,
                "status": status,
                "ename": ename,
                "evalue": evalue,
                "traceback": trace,
                "stdout": _short(out.value()),
                "stderr": _short(err.value()),
            }
        )


def _gradients(output: object, inputs: list[object], cotangent: object) -> list[object]:
    import torch

    if not isinstance(output, torch.Tensor):
        raise TypeError(f"a gradient was requested but the function returned {type(output).__name__}")
    if not output.requires_grad:
        raise TypeError("a gradient was requested but the returned tensor does not depend on the inputs")
    grad_output = torch.as_tensor(cotangent, dtype=output.dtype)
    grads = torch.autograd.grad(output, inputs, grad_outputs=grad_output, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]


def _run_calls(job: dict[str, Any], namespace: dict[str, Any], channel: _Channel, runner_pid: int) -> None:
    limits = job["limits"]
    timed_out: set[str] = set()
    sink_budget = [int(limits["output_total"])]
    real_out, real_err = sys.stdout, sys.stderr
    for call in job["calls"]:
        name = call["name"]
        event: dict[str, Any] = {"ev": "call", "id": call["id"]}
        if name in timed_out:
            channel.emit({**event, "ok": False, "timeout": True, "error": f"skipped: an earlier call of {name} hit the time limit"})
            continue
        channel.emit({"ev": "call_start", "id": call["id"]})
        try:
            sys.stdout = _CappedText(200, sink_budget)
            sys.stderr = _CappedText(200, sink_budget)
            _arm(float(limits["call_timeout"]))
            if call["kind"] == "variable":
                if name not in namespace:
                    raise NameError(f"the notebook defines no variable {name!r}")
                value = namespace[name]
                grads: list[object] = []
            else:
                function = namespace.get(name)
                if function is None or not callable(function):
                    raise NameError(f"the notebook defines no function {name!r}")
                args = [_from_wire(a, call["tensors"]) for a in call["args"]]
                kwargs = {k: _from_wire(v, call["tensors"]) for k, v in call["kwargs"].items()}
                wanted = [int(i) for i in call.get("grad_wrt", [])]
                for position in wanted:
                    args[position] = args[position].requires_grad_(True)
                value = function(*args, **kwargs)
                grads = []
                if wanted:
                    cotangent = _from_wire(call["cotangent"], False)
                    grads = _gradients(value, [args[i] for i in wanted], cotangent)
            from coursekit.grading.wire import encode_value

            payload = encode_value(_to_plain(value))
            grad_payload = [encode_value(_to_plain(g)) for g in grads]
            _disarm()
            event.update(ok=True, value=payload, grads=grad_payload)
        except CellTimeout:
            _disarm()
            timed_out.add(name)
            event.update(ok=False, error="time limit reached", timeout=True)
        except BaseException as error:  # noqa: BLE001 - student code may raise anything
            _disarm()
            event.update(ok=False, error=_short(f"{type(error).__name__}: {error}", 500), ename=type(error).__name__,
                         oom=_out_of_memory(error))
        finally:
            _disarm()
            sys.stdout, sys.stderr = real_out, real_err
        if os.getpid() != runner_pid:
            os._exit(0)
        _reap_strays(job.get("uid") is not None)
        channel.emit(event)


def main() -> None:
    """Run the job read from stdin; see the module docstring."""
    runner_pid = os.getpid()
    job = json.loads(sys.stdin.buffer.read())
    event_fd = int(job["event_fd"])
    os.dup2(event_fd, _SAFE_FD)
    os.close(event_fd)
    channel = _Channel(_SAFE_FD)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    workdir = job["workdir"]
    os.makedirs(workdir, exist_ok=True)
    import base64

    for relative, data in job["files"].items():
        target = os.path.join(workdir, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(base64.b64decode(data))
    uid = job.get("uid")
    if uid is not None and os.getuid() == 0:
        for root, dirs, files in os.walk(workdir):
            for entry in dirs + files:
                os.chown(os.path.join(root, entry), uid, uid)
        os.chown(workdir, uid, uid)
    _drop_privileges(uid)
    _apply_limits(job["limits"])
    os.chdir(workdir)
    sys.path.insert(0, workdir)
    # Imported before student code so that a crash while importing is ours, not theirs.
    import numpy  # noqa: F401
    import torch  # noqa: F401

    _apply_memory_budget(job.get("memory_budget_mb"))
    channel.emit({"ev": "ready", "pid": runner_pid})
    shell = _Shell()
    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "__builtins__": builtins,
        "get_ipython": lambda: shell,
        "display": print,
    }
    _run_cells(job, namespace, channel, runner_pid)
    for source in job.get("adapters", []):
        try:
            _arm(float(job["limits"]["cell_timeout"]))
            exec(compile(source, "<grader adapter>", "exec"), namespace)
        except BaseException:  # noqa: BLE001 - a broken notebook can break an adapter; its calls then fail
            pass
        finally:
            _disarm()
    _run_calls(job, namespace, channel, runner_pid)
    channel.emit({"ev": "done"})
    os._exit(0)


if __name__ == "__main__":
    main()
