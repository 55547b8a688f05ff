"""The vector-Jacobian product both graders take of a graded function's output.

:func:`vector_jacobian_product` is the gradient of the scalar
``(output * cotangent).sum()``, which is ``cotangent`` pulled back through the
graph: for a real output, the same numbers as ``torch.autograd.grad(output,
inputs, cotangent)`` (the backward of ``sum`` sends ones, that of
``* cotangent`` multiplies them by ``cotangent``, so the output's gradient is
``cotangent`` exactly). It is written this way because PyTorch's
``autograd.grad`` with a tensor ``grad_outputs`` imports
``torch.fx.experimental.symbolic_shapes`` and, with it, SymPy the first time,
about half a second in each fresh process: in every sandbox's kernel.

The product runs the ATen operators :data:`VJP_OPERATORS` beyond the
function's own backward, inside the ban of the graded call (the backward pass
is the function's too), so a question cannot ban them
(:data:`~coursekit.grading.graded_call.GRADER_OPERATORS` holds them).
"""

from __future__ import annotations

from typing import Sequence

import torch

#: the ATen operators the product and its zero gradients run besides the function's own backward, at any
#: depth (``ones_like`` runs ``empty_like`` and ``fill_``, say); the tests check the set on the installed PyTorch.
VJP_OPERATORS = frozenset({"as_strided", "empty_like", "empty_strided", "expand", "fill_", "mul", "ones_like", "sum",
                           "zero_", "zeros_like"})


def vector_jacobian_product(output: torch.Tensor, inputs: Sequence[torch.Tensor],
                            cotangent: torch.Tensor) -> list[torch.Tensor]:
    """``cotangent`` pulled back to each of ``inputs``: ``sum_j cotangent[j] * d output[j] / d input``.

    Gradients are recorded whatever the caller's grad mode, as ``autograd.grad``
    computes them whatever it is.

    Args:
        output: the function's real-valued result, of any shape, depending on ``inputs``.
        inputs: tensors that require gradients.
        cotangent: a tensor of ``output``'s shape and dtype.

    Returns:
        One gradient per input, of the input's shape; zeros for an input ``output`` does not depend on.

    Raises:
        ValueError: ``cotangent``'s shape is not ``output``'s.

    Example:
        >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> vector_jacobian_product(x ** 2, [x], torch.tensor([1.0, 10.0]))
        [tensor([ 2., 40.])]
    """
    if cotangent.shape != output.shape:
        raise ValueError(f"cotangent must have the output's shape {tuple(output.shape)}, "
                         f"got {tuple(cotangent.shape)}")
    with torch.enable_grad():
        pulled = torch.autograd.grad((output * cotangent).sum(), list(inputs), allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(pulled, inputs)]
