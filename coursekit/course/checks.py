"""Comparisons used by the assignments' hidden tests.

A hidden test calls the student's function and the ``coursekit.losses``
reference on the same inputs and compares values and, where a gradient is meant
to flow, gradients. The failure messages say what differed and on which input
shapes and options, never how the reference computes it, because they are shown
to students in their feedback.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch


def _describe(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    parts = []
    for value in args:
        if isinstance(value, torch.Tensor):
            parts.append(f"tensor{tuple(value.shape)}:{str(value.dtype).replace('torch.', '')}")
        else:
            parts.append(repr(value))
    parts += [f"{key}={value!r}" for key, value in kwargs.items() if not isinstance(value, torch.Tensor)]
    parts += [f"{key}=tensor{tuple(value.shape)}" for key, value in kwargs.items() if isinstance(value, torch.Tensor)]
    return "(" + ", ".join(parts) + ")"


def assert_close(what: str, got: object, expected: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """Raise ``AssertionError`` unless ``got`` is a tensor equal to ``expected`` within tolerance.

    ``nan`` equals ``nan`` (a documented ``nan`` result must be reproduced).

    Args:
        what: names the checked quantity in the message.
        got: the student's result.
        expected: the reference result.
        atol: absolute tolerance.
        rtol: relative tolerance.

    Raises:
        AssertionError: wrong type, shape or values.

    Example:
        >>> assert_close("sum", torch.tensor(1.0), torch.tensor(1.0))
        >>> assert_close("sum", torch.tensor(1.5), torch.tensor(1.0))
        Traceback (most recent call last):
        ...
        AssertionError: sum: values differ from the expected ones (largest difference 0.5)
    """
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{what}: expected a torch.Tensor, got {type(got).__name__}")
    if tuple(got.shape) != tuple(expected.shape):
        raise AssertionError(f"{what}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
    mine = got.detach().to(torch.float64)
    ref = expected.detach().to(torch.float64)
    if not torch.allclose(mine, ref, atol=atol, rtol=rtol, equal_nan=True):
        both = torch.isfinite(mine) & torch.isfinite(ref)
        gap = float((mine - ref)[both].abs().max()) if bool(both.any()) else float("nan")
        raise AssertionError(f"{what}: values differ from the expected ones (largest difference {gap:.3g})")


def compare_with_reference(
    what: str,
    student: Callable[..., Any],
    reference: Callable[..., torch.Tensor],
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None = None,
    *,
    grad_args: Sequence[int] = (),
    atol: float = 1e-5,
    rtol: float = 1e-5,
    seed: int = 0,
) -> None:
    """Check that ``student(*args, **kwargs)`` equals ``reference(...)`` in value and gradients.

    Each call gets its own detached copies of the tensor arguments; warnings
    raised during either call are silenced. For the
    positional arguments listed in ``grad_args``, the gradients of
    ``sum(w * output)`` (``w`` random with ``seed``, zero where the reference
    output is not finite) are compared too.

    Args:
        what: names the function in the messages.
        student: the student's function.
        reference: the ``coursekit`` reference.
        args: positional arguments.
        kwargs: keyword arguments.
        grad_args: indices of the float tensor arguments to differentiate.
        atol: absolute tolerance for values and gradients.
        rtol: relative tolerance.
        seed: seed of the random output weights.

    Raises:
        AssertionError: a value or a gradient differs, or the student's function raised.

    Example:
        >>> x = torch.tensor([1.0, 2.0])
        >>> compare_with_reference("double", lambda t: 2 * t, lambda t: t + t, [x], grad_args=[0])
        >>> compare_with_reference("double", lambda t: 2 * t.detach(), lambda t: t + t, [x], grad_args=[0])
        Traceback (most recent call last):
        ...
        AssertionError: double(tensor(2,):float32): the output is not differentiable with respect to argument 0
    """
    kwargs = dict(kwargs or {})
    call = f"{what}{_describe(args, kwargs)}"

    def fresh() -> tuple[list[Any], dict[str, Any]]:
        copied = []
        for index, value in enumerate(args):
            if isinstance(value, torch.Tensor):
                value = value.detach().clone()
                if index in grad_args:
                    value.requires_grad_(True)
            copied.append(value)
        return copied, {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}

    ref_args, ref_kwargs = fresh()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = reference(*ref_args, **ref_kwargs)
    my_args, my_kwargs = fresh()
    try:
        with warnings.catch_warnings():
            # Warnings the reference also gives (e.g. an all-masked batch) are expected here.
            warnings.simplefilter("ignore")
            got = student(*my_args, **my_kwargs)
    except Exception as error:  # the student's exception becomes a test failure with context
        raise AssertionError(f"{call} raised {type(error).__name__}: {error}") from None
    assert_close(call, got, expected, atol=atol, rtol=rtol)
    if not grad_args:
        return
    generator = torch.Generator().manual_seed(seed)
    weights = torch.rand(expected.shape, generator=generator, dtype=torch.float64)
    finite = torch.isfinite(expected.detach())
    weights = torch.where(finite, weights, torch.zeros_like(weights))

    def weighted(out: torch.Tensor) -> torch.Tensor:
        safe = torch.where(finite, out, torch.zeros_like(out))
        return (safe.to(torch.float64) * weights).sum()

    inputs_ref = [ref_args[i] for i in grad_args]
    inputs_mine = [my_args[i] for i in grad_args]
    expected_grads = torch.autograd.grad(weighted(expected), inputs_ref, allow_unused=True)
    if not got.requires_grad:
        raise AssertionError(f"{call}: the output is not differentiable with respect to argument {grad_args[0]}")
    got_grads = torch.autograd.grad(weighted(got), inputs_mine, allow_unused=True)
    for index, mine, ref in zip(grad_args, got_grads, expected_grads):
        ref = torch.zeros_like(args[index]) if ref is None else ref
        mine = torch.zeros_like(args[index]) if mine is None else mine
        assert_close(f"{call}: gradient with respect to argument {index}", mine, ref, atol=atol, rtol=rtol)
