"""Helpers that make the losses follow ``torch.autocast``: where autocast is on, each loss computes in float32.

Which dtype each reference (``F.cross_entropy``, ``F.kl_div``, ``F.ctc_loss``)
computes in under CPU and CUDA autocast, and how coursekit's values compare
with them, is the "Mixed precision" part of the package docstring
(:mod:`coursekit.losses`), which the API reference renders.
"""

from __future__ import annotations

import contextlib
import functools

import torch


def autocast_on(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (never for the meta device, which autocast does not know)."""
    return device_type != "meta" and torch.is_autocast_enabled(device_type)


def autocast_dtype(tensor: torch.Tensor) -> torch.dtype | None:
    """The autocast dtype (bfloat16 or float16) where autocast is on for ``tensor``'s device, else ``None``."""
    device_type = tensor.device.type
    return torch.get_autocast_dtype(device_type) if autocast_on(device_type) else None


def without_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """A context with autocast off for ``device_type`` (nothing to do where it is off already)."""
    if autocast_on(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def cast_for_autocast(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``tensor`` as autocast gives it to a matrix product: in ``dtype``, unless it is float64.

    The cast is differentiable, so the gradient comes back in the tensor's own
    dtype, as it does through ``hidden @ weight.T`` under autocast.
    """
    return tensor if tensor.dtype == torch.float64 else tensor.to(dtype)


def float32_under_autocast(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as CPU autocast gives it to ``F.cross_entropy``: float32 where autocast is on, unless float64.

    Where autocast is off for the tensor's device, ``tensor`` itself. The cast
    is differentiable: the gradient comes back in the tensor's own dtype.

    Example:
        >>> logits = torch.zeros(2, 3, dtype=torch.bfloat16)
        >>> float32_under_autocast(logits).dtype
        torch.bfloat16
        >>> with torch.autocast("cpu", dtype=torch.bfloat16):
        ...     float32_under_autocast(logits).dtype
        torch.float32
    """
    if tensor.dtype == torch.float64 or not autocast_on(tensor.device.type):
        return tensor
    return tensor.float()


def _category(dtype: torch.dtype) -> int:
    """PyTorch's promotion categories: bool < integer < floating < complex."""
    if dtype == torch.bool:
        return 0
    if dtype.is_complex:
        return 3
    return 2 if dtype.is_floating_point else 1


def _promote(operands: list[tuple[torch.dtype, bool]]) -> torch.dtype:
    """PyTorch's rule for ``(dtype, is 0-d)`` operands: a 0-d tensor counts only where its category is higher."""
    dimensioned = [dtype for dtype, zero_dim in operands if not zero_dim]
    zero_dim = [dtype for dtype, is_zero_dim in operands if is_zero_dim]
    if not dimensioned or not zero_dim:
        return functools.reduce(torch.promote_types, dimensioned or zero_dim)
    result, scalar = functools.reduce(torch.promote_types, dimensioned), functools.reduce(torch.promote_types, zero_dim)
    return torch.promote_types(result, scalar) if _category(scalar) > _category(result) else result


def promoted_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype PyTorch's type promotion gives ``tensors`` in an elementwise operation (``torch.result_type``).

    The losses that combine several tensors compute in it, as the PyTorch or
    TRL expressions they equal do: a bfloat16 tensor with a float32 one gives
    float32, float32 with float64 gives float64, and an integer tensor takes
    the floating dtype of the others. Casting the others down to the first
    argument's dtype instead would round a float32 partner to bfloat16. As in
    PyTorch, a 0-d tensor (a baseline, say) changes the dtype only when it is
    of a higher category (a float beside integers), never float32 to float64.

    Example:
        >>> promoted_dtype(torch.zeros(1, dtype=torch.bfloat16), torch.zeros(1))
        torch.float32
        >>> promoted_dtype(torch.zeros(1, dtype=torch.bfloat16), torch.zeros(1, dtype=torch.long))
        torch.bfloat16
        >>> promoted_dtype(torch.zeros(3), torch.tensor(0.5, dtype=torch.float64))
        torch.float32
    """
    return _promote([(tensor.dtype, tensor.dim() == 0) for tensor in tensors])


def promoted_under_autocast(*tensors: torch.Tensor) -> torch.dtype:
    """:func:`promoted_dtype` of the floating-point tensors as :func:`float32_under_autocast` gives them.

    Where autocast is on, half-precision tensors count as float32 (float64
    stays float64); elsewhere it is :func:`promoted_dtype` itself. Nothing is
    cast to find it.

    Example:
        >>> student = torch.zeros(1, dtype=torch.bfloat16)
        >>> promoted_under_autocast(student, student)
        torch.bfloat16
        >>> with torch.autocast("cpu", dtype=torch.bfloat16):
        ...     promoted_under_autocast(student, student)
        torch.float32
    """
    return _promote([
        (torch.float32 if tensor.dtype != torch.float64 and autocast_on(tensor.device.type) else tensor.dtype,
         tensor.dim() == 0)
        for tensor in tensors
    ])
