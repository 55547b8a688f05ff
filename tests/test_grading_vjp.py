"""The graders' vector-Jacobian product: PyTorch's own numbers, without the SymPy import PyTorch's path costs."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import torch

from coursekit import losses
from coursekit.grading.graded_call import GRADER_OPERATORS, run_graded_call
from coursekit.grading.protocol import CallStatus
from coursekit.grading.spec import BannedOp
from coursekit.grading.vjp import VJP_OPERATORS, vector_jacobian_product
from coursekit.grading.wire import encode_value
from conftest import REPO_ROOT

pytestmark = pytest.mark.grading


def _cases() -> list[tuple[str, torch.Tensor, list[torch.Tensor], torch.Tensor]]:
    """(name, output, inputs, cotangent) built afresh, since each backward frees its graph."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 7, (3, 5), generator=generator)
    targets[1, 3:] = -100
    scale = torch.randn(7, generator=generator, dtype=torch.float64, requires_grad=True)
    unused = torch.randn(2, generator=generator, dtype=torch.float64, requires_grad=True)
    nll = losses.token_nll(logits * scale, targets)
    half = (logits.float() * scale.float()).log_softmax(-1).half()
    return [
        ("token_nll", nll, [logits, scale, unused], torch.randn(nll.shape, generator=generator, dtype=nll.dtype)),
        ("float16 log_softmax", half, [logits, scale],
         torch.randn(half.shape, generator=generator).half()),
        ("0-d summed loss", losses.token_nll(logits, targets).sum(), [logits],
         torch.tensor(1.7, dtype=torch.float64)),
    ]


@pytest.mark.parametrize("index", range(3))
def test_equals_autograd_grad_with_grad_outputs_bit_for_bit(index: int) -> None:
    name, output, inputs, cotangent = _cases()[index]
    ours = vector_jacobian_product(output, inputs, cotangent)
    name, output, inputs, cotangent = _cases()[index]
    theirs = torch.autograd.grad(output, inputs, cotangent, allow_unused=True)
    assert len(ours) == len(inputs)
    for mine, reference, x in zip(ours, theirs, inputs):
        expected = torch.zeros_like(x) if reference is None else reference
        assert mine.dtype == expected.dtype and mine.shape == x.shape, name
        assert torch.equal(mine, expected), name


def test_an_input_the_output_ignores_gets_zeros() -> None:
    _, output, inputs, cotangent = _cases()[0]
    assert torch.equal(vector_jacobian_product(output, inputs, cotangent)[2], torch.zeros(2, dtype=torch.float64))


def test_a_cotangent_of_another_shape_is_refused_by_name() -> None:
    x = torch.ones(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match=r"cotangent must have the output's shape \(2, 3\), got \(3, 2\)"):
        vector_jacobian_product(x * 2, [x], torch.ones(3, 2))


@pytest.mark.slow
def test_a_fresh_process_takes_it_without_importing_sympy() -> None:
    """The reason the module exists: PyTorch's ``grad_outputs`` path imports SymPy in every fresh kernel."""
    script = (
        "import sys, torch\n"
        "from coursekit.grading.vjp import vector_jacobian_product\n"
        "x = torch.ones(4, requires_grad=True)\n"
        "vector_jacobian_product(x.log_softmax(0), [x], torch.arange(4.0))\n"
        "print('sympy' in sys.modules)\n"
        "torch.autograd.grad(x.log_softmax(0), [x], torch.arange(4.0))\n"
        "print('sympy' in sys.modules)\n"
    )
    printed = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True, timeout=120).stdout.split()
    # The second line shows the check can fail: PyTorch's own path does import it.
    assert printed == ["False", "True"]


def test_gradients_are_taken_whatever_the_callers_grad_mode() -> None:
    """Grader review r18, F3: a notebook that turns grad mode off and a function that turns it back on for itself
    (``@torch.enable_grad()``) got 'does not require grad' where ``autograd.grad`` gives the gradient."""
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    with torch.enable_grad():
        output = x ** 2
    with torch.no_grad():
        assert torch.equal(vector_jacobian_product(output, [x], torch.tensor([1.0, 10.0]))[0],
                           torch.tensor([2.0, 40.0]))


def test_the_operators_it_runs_are_the_ones_a_question_cannot_ban() -> None:
    """``VJP_OPERATORS`` is every ATen operator the product runs beyond the function's own backward, nested ones
    included (the profiler records each dispatch; a ban replaces the CPU kernels, which nested calls reach too)."""
    from torch.profiler import ProfilerActivity, profile

    leaf, unused, cotangent = torch.randn(2, 3, requires_grad=True), torch.randn(2, requires_grad=True), torch.randn(2, 3)
    with profile(activities=[ProfilerActivity.CPU]) as recorded:
        vector_jacobian_product(leaf, [leaf, unused], cotangent)
    ran = {event.name.removeprefix("aten::") for event in recorded.events() if event.name.startswith("aten::")}
    assert ran == VJP_OPERATORS


def _call(*, banned: list[str], grad_wrt: list[int], args: int = 1) -> dict[str, Any]:
    return {"id": "q#0", "kind": "function", "name": "f", "tensors": True,
            "args": [encode_value(np.ones(3, dtype=np.float32))] * args, "kwargs": {}, "banned": banned,
            "grad_wrt": grad_wrt, "cotangent": encode_value(np.arange(3.0))}


def test_grader_operators_is_what_the_graded_calls_add_and_no_more() -> None:
    """Grader review r20, F1 to r22: decoding the arguments, converting the cotangent, the product and encoding
    the result run these, nested ones included, over the kinds of value a function returns (below)."""
    call = {"id": "q#0", "kind": "function", "name": "f", "tensors": True,
            "args": [encode_value(np.ones(3, dtype=np.float32))] * 2, "kwargs": {}, "banned": [], "grad_wrt": [0, 1],
            "cotangent": encode_value(np.arange(3.0))}
    unused_input = _aten_ops(lambda: run_graded_call({"f": lambda x, unused: x}, call))
    assert set().union(unused_input, *(_added(case) for case in RETURNS)) == GRADER_OPERATORS


def _aten_ops(block: Any) -> set[str]:
    """The ATen operators ``block()`` dispatches, nested ones included (the profiler records every dispatch)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as recorded:
        block()
    return {event.name.removeprefix("aten::") for event in recorded.events() if event.name.startswith("aten::")}


RETURNS = {
    # name: (function, argument, grad_wrt, cotangent dtype)
    "float16 in, float64 cotangent": (lambda x: x, np.ones(3, dtype=np.float16), [0], np.float64),
    "float64 in, float32 cotangent": (lambda x: x, np.ones(3), [0], np.float32),
    "0-d": (lambda x: x.sum(), np.ones(3, dtype=np.float32), [0], np.float32),
    "two paths to the input": (lambda x: x * x, np.ones(3, dtype=np.float32), [0], np.float32),
    "the input stacked twice": (lambda x: torch.stack([x, x]), np.ones(3, dtype=np.float32), [0], np.float32),
    "bfloat16": (lambda x: x.bfloat16(), np.ones(3, dtype=np.float32), [], None),
    "non-contiguous": (lambda x: x.t(), np.ones((2, 3), dtype=np.float32), [], None),
    "negative bit": (lambda x: torch.complex(x, x).conj().imag, np.ones(3, dtype=np.float32), [], None),
    "list of tensors": (lambda x: [x, (x, x)], np.ones(3, dtype=np.float32), [], None),
    "numpy array": (lambda x: np.ones(3), np.ones(3, dtype=np.float32), [], None),
    "python scalar": (lambda x: 1.5, np.ones(3, dtype=np.float32), [], None),
    "None": (lambda x: None, np.ones(3, dtype=np.float32), [], None),
    "int64": (lambda x: x.long(), np.ones(3, dtype=np.float32), [], None),
}
#: what a case's own backward runs (the function's, not the grader's): stack's backward selects its rows.
OWN_BACKWARD = {"the input stacked twice": {"select"}}


@pytest.mark.parametrize("case", sorted(RETURNS))
def test_what_a_graded_call_runs_beyond_the_function_is_in_grader_operators(case: str) -> None:
    """Grader review r22, F2 and F3: autograd's add_ (an input used twice) and resolve_neg's clone were missing.
    What the function's forward runs on its own is the student's; what the graded call adds must be refusable."""
    added = _added(case)
    assert added <= GRADER_OPERATORS, sorted(added - GRADER_OPERATORS)


def _added(case: str) -> set[str]:
    function, argument, grad_wrt, cotangent_dtype = RETURNS[case]
    shape = np.shape(function(torch.from_numpy(argument.copy()))) if grad_wrt else ()
    call = {"id": "q#0", "kind": "function", "name": "f", "tensors": True, "args": [encode_value(argument)],
            "kwargs": {}, "banned": [], "grad_wrt": grad_wrt,
            "cotangent": encode_value(np.ones(shape, dtype=cotangent_dtype)) if grad_wrt else None}
    return (_aten_ops(lambda: run_graded_call({"f": function}, call))
            - _aten_ops(lambda: function(torch.from_numpy(argument.copy()))) - OWN_BACKWARD.get(case, set()))


@pytest.mark.parametrize("operator", sorted(GRADER_OPERATORS))
def test_a_spec_cannot_ban_an_operator_a_graded_call_may_run(operator: str) -> None:
    with pytest.raises(ValueError, match=f"BannedOp.aten cannot be '{operator}': the graders may run it inside a"):
        BannedOp(operator, "x")


def test_a_banned_operator_in_a_custom_backward_is_caught() -> None:
    """The backward pass is the function's own: a custom autograd.Function cannot hide a banned operator there."""

    class Sneaky(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            return x * 2

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            return torch.logsumexp(grad[None], 0) * 2

    report = run_graded_call({"f": Sneaky.apply}, _call(banned=["logsumexp"], grad_wrt=[0]))
    assert (report.status, report.hits) == (CallStatus.BANNED, ["logsumexp"])


def test_a_result_that_computes_when_the_grader_converts_it_is_inside_the_ban() -> None:
    """Grader review r21, F1: a tensor subclass that computes the answer with a banned operator when the grader
    detaches it escaped the ban once the conversion ran outside it."""

    class Lazy(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            if func is torch.Tensor.detach:
                return torch.logsumexp(args[0].as_subclass(torch.Tensor)[None], 0).detach()
            return super().__torch_function__(func, types, args, kwargs or {})

    report = run_graded_call({"f": lambda x: x.as_subclass(Lazy)}, _call(banned=["logsumexp"], grad_wrt=[]))
    assert (report.status, report.hits) == (CallStatus.BANNED, ["logsumexp"])


def test_a_complex_result_is_refused_as_complex_before_any_gradient() -> None:
    call = {"id": "q#0", "kind": "function", "name": "f", "tensors": True, "args": [encode_value(np.ones(2))],
            "kwargs": {}, "banned": [], "grad_wrt": [0], "cotangent": encode_value(np.ones(2))}
    report = run_graded_call({"f": lambda x: x * (1 + 1j)}, call)
    assert (report.status, report.ename, report.evalue) == (CallStatus.RAISED, "TypeError",
                                                           "complex tensors are not accepted")
