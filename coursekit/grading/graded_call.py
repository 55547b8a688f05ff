"""One graded call in the process that holds the student's namespace: the sandbox's kernel, or nbgrader's.

Both graders call a student's function through :func:`run_graded_call`, so
the arguments are decoded, the question's banned PyTorch operators raise, the
gradients are taken with the grader's cotangents and the result is encoded
the same way, whichever grader asks: the sandbox's kernel
(:mod:`coursekit.grading.kernel`, which adds its own isolation, output caps and
the withheld references' tripwires) and the hidden block of a test cell under
stock ``nbgrader autograde`` (:mod:`coursekit.course.hidden_score`).

Everything here runs next to the student's code, so nothing here is trusted:
what it returns is plain data that the grader decodes strictly.
"""

from __future__ import annotations

import contextlib
import signal
import warnings
from typing import Any, Callable, ContextManager, Iterator

import numpy as np
import torch
from torch._functorch.predispatch import lazy_load_decompositions
import torch.library

from coursekit.grading import protocol
from coursekit.grading.protocol import CallReport, CallStatus
from coursekit.grading.vjp import VJP_OPERATORS, vector_jacobian_product
from coursekit.grading.wire import MAX_DEPTH, decode_value, encode_value


class CellTimeout(BaseException):
    """Raised by the per-cell / per-call timer (a BaseException, so ``except Exception`` does not swallow it)."""


class BannedOperation(RuntimeError):
    """Raised when a graded call runs a PyTorch operator its question bans."""



def short(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[: cap - 12] + "\n[truncated]"


def error_message(error: BaseException) -> str:
    """The exception's message, capped; empty when the student's ``__str__`` itself raises."""
    try:
        return short(str(error), protocol.MAX_EVALUE)
    except BaseException:  # noqa: BLE001 - a student's __str__ may raise anything
        return ""


def _raise_timeout(_signum: int, _frame: object) -> None:
    raise CellTimeout("time limit reached")


@contextlib.contextmanager
def timers(cpu_s: float, wall_s: float) -> Iterator[None]:
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



#: the ATen operators a graded call may run besides the student's function and its backward, at any depth:
#: decoding the arguments, converting the cotangent, the vector-Jacobian product (with autograd's ``add_`` or
#: ``add`` where an input reaches the output by two paths) and encoding the result (``clone`` where a tensor carries
#: the negative bit). All of it runs inside the question's ban, since it touches what the function returned (a
#: tensor subclass's methods are the student's code), so a spec cannot ban these
#: (:class:`~coursekit.grading.spec.BannedOp`); the tests check the set.
GRADER_OPERATORS = VJP_OPERATORS | frozenset({"_to_copy", "add", "add_", "clone", "copy_", "detach", "lift_fresh",
                                              "resolve_conj", "resolve_neg", "to"})

#: the dispatch keys a ban replaces: every CPU layout (dense, sparse COO and CSR, MKL-DNN, quantized), so
#: that converting the input (``x.to_sparse()``) does not reach the built-in kernel through another key; and
#: ``torch.vmap``'s batching key, under which an operator PyTorch composes from others (``cross_entropy_loss``)
#: would otherwise run its composition without reaching a CPU kernel of its own (grader review r28, F1).
BANNED_DISPATCH_KEYS = ("CPU", "SparseCPU", "SparseCsrCPU", "MkldnnCPU", "QuantizedCPU", "FuncTorchBatched")


@contextlib.contextmanager
def banned(operators: list[str], hits: list[str]) -> Iterator[None]:
    """Make the ATen ``operators`` (every overload) raise while the block runs, recording each attempt.

    The operators are replaced in PyTorch's dispatcher for every CPU layout and
    ``torch.vmap``'s batching key (:data:`BANNED_DISPATCH_KEYS`), below every
    Python name, so an alias, ``getattr`` or ``torch.ops.aten`` reaches the same
    stand-in; leaving the block puts the real kernels back.
    The stand-ins live in this process, so student code can remove them, or
    start another process without them (see :mod:`coursekit.grading.kernel`):
    the ban deters, it does not enforce.
    """
    if not operators:
        yield
        return
    # torch.vmap registers some of its decompositions (nll_loss_forward's, say) on the batching key the first
    # time it runs in a process, over whatever is there: they are registered before the stand-ins instead
    # (grader review r30, F1).
    lazy_load_decompositions()

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
    if not isinstance(error, RuntimeError):
        return False
    try:
        return "can't allocate memory" in str(error)[:2000]
    except BaseException:  # noqa: BLE001 - a student's __str__ may raise anything (grader review r31, F3)
        return False



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
    if output.is_complex():
        # Refused as the value would be (see _to_plain), before the product, which is for real outputs only.
        raise TypeError("complex tensors are not accepted")
    if not output.requires_grad:
        raise TypeError("a gradient was requested but the returned tensor does not depend on the inputs")
    return vector_jacobian_product(output, inputs, grad_output)


def evaluate(namespace: dict[str, Any], call: dict[str, Any]) -> tuple[object, list[Any]]:
    """Read the call's variable, or call its function on the decoded arguments and take the gradients asked for.

    Args:
        namespace: the notebook's globals.
        call: a prepared call's message (see :func:`~coursekit.grading.spec.prepare_calls`).

    Returns:
        The value, and the gradients with respect to the arguments at ``call["grad_wrt"]``.

    Raises:
        NameError: the notebook defines no such variable or function.
    """
    name = call["name"]
    if call["kind"] == "variable":
        if name not in namespace:
            raise NameError(f"the notebook defines no variable {name!r}")
        return namespace[name], []
    function = namespace.get(name)
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


def run_graded_call(namespace: dict[str, Any], call: dict[str, Any],
                    limit: Callable[[], ContextManager[None]] = contextlib.nullcontext) -> CallReport:
    """Make one graded call and report it as the kernel does (withheld references aside).

    The question's banned operators raise during the call (see :func:`banned`);
    an exception, a time limit (``limit``'s :class:`CellTimeout`) or a failed
    allocation becomes the report's status; the value and the gradients are
    encoded for the wire. A call that ran a banned operator reports ``banned``
    and the operators, whatever it returned.

    Args:
        namespace: the notebook's globals.
        call: a prepared call's message.
        limit: makes the context the call runs in (the kernel's per-step timers); none by default.

    Returns:
        The call's report.

    Example:
        >>> call = {"id": "q#0", "kind": "function", "name": "double", "tensors": False,
        ...         "args": [encode_value(2)], "kwargs": {}, "banned": []}
        >>> report = run_graded_call({"double": lambda x: 2 * x}, call)
        >>> report.status.value, decode_value(report.value)
        ('ok', 4)
    """
    banned_hits: list[str] = []
    status, value, grads, ename, evalue = CallStatus.OK, None, [], "", ""
    try:
        with limit(), banned(list(call.get("banned", [])), banned_hits):
            result, gradients = evaluate(namespace, call)
            value = encode_value(_to_plain(result))
            grads = [encode_value(_to_plain(g)) for g in gradients]
    except CellTimeout:
        status = CallStatus.TIMEOUT
    except BaseException as error:  # noqa: BLE001 - student code may raise anything
        status = CallStatus.OUT_OF_MEMORY if _out_of_memory(error) else CallStatus.RAISED
        ename = short(type(error).__name__, protocol.MAX_ENAME)
        evalue = error_message(error)
    hits: list[str] = []
    if banned_hits:
        status, hits = CallStatus.BANNED, sorted(set(banned_hits))
    if status is not CallStatus.OK:
        value, grads = None, []
    return CallReport(str(call["id"]), status, value, grads, ename, hits[: protocol.MAX_NAMES], evalue)
