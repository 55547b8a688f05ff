"""How the losses follow ``torch.autocast``: the dtype each step computes in where autocast is on.

Autocast sorts operations into lists. A matrix product (``F.linear``) runs in
the autocast dtype (bfloat16 or float16); ``F.cross_entropy`` raises its input
to float32 and returns float32 on every device (on the CPU it is on the
float32 list itself, on CUDA its parts ``log_softmax`` and ``nll_loss`` are).
``torch.log_softmax`` is on no list on the CPU, where it keeps its input's
dtype. The losses built on it therefore
raise their logits to float32 themselves where autocast is on, so that they
compute, on every device, what ``F.cross_entropy`` computes there. Autocast
leaves float64 tensors alone in both lists, and so do these helpers.
"""

from __future__ import annotations

import contextlib

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
    """``tensor`` as autocast gives it to ``F.cross_entropy``: float32 where autocast is on, unless float64.

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
