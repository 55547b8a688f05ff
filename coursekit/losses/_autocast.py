"""How the losses follow ``torch.autocast``: the dtype each step computes in where autocast is on.

Autocast sorts operations into lists, one set for the CPU and one for CUDA
(and the other accelerators). A matrix product (``F.linear``) runs in the
autocast dtype (bfloat16 or float16) on both. For the references of the
losses here the lists differ:

* CUDA: the float32 lists ``AT_FORALL_FP32`` and ``AT_FORALL_FP32_SET_OPT_DTYPE``
  of the installed ``torch/include/ATen/autocast_mode.h`` (the list torch's
  AMP page gives as "CUDA Ops that can autocast to float32") hold
  ``nll_loss``, ``kl_div``, ``log_softmax``, ``softmax`` and ``logsumexp``,
  not ``ctc_loss``. So ``F.cross_entropy`` (``log_softmax`` then
  ``nll_loss``) and every ``F.kl_div(F.log_softmax(...), ...)`` expression
  compute in float32. ``F.ctc_loss`` is not autocast on CUDA, and it has no
  float16 or bfloat16 kernel on any device: ``ctc_loss_gpu`` in PyTorch's
  ``aten/src/ATen/native/cuda/LossCTC.cu`` dispatches on
  ``AT_DISPATCH_FLOATING_TYPES`` (float and double), as the CPU kernel does,
  and the installed torch's own OpInfo for ``nn.functional.ctc_loss``
  (``torch/testing/_internal/common_methods_invocations.py``) declares
  ``dtypes=floating_types()`` with no CUDA dtypes of its own. Given
  half-precision log-probabilities outside CPU autocast, it raises
  ``NotImplementedError``.
* CPU (measured with torch 2.13 under bfloat16 autocast): ``F.cross_entropy``,
  ``F.nll_loss``, ``F.kl_div`` and ``F.ctc_loss`` return float32 (CPU autocast
  casts ``F.ctc_loss``'s input to float32), while ``F.log_softmax``,
  ``F.softmax`` and ``torch.logsumexp`` keep bfloat16. So the expressions
  that take ``F.log_softmax`` before ``F.kl_div`` (kd_loss's reference, TRL's
  ``generalized_jsd_loss``) round their log-probabilities to bfloat16 and
  only then compute in float32, and kd_cross_entropy's reference takes
  bfloat16 ``F.softmax`` targets.
* Both: a division is on no list, so a reference's ``logits / temperature``
  stays in the autocast dtype, rounded before the log-softmax raises it.

coursekit computes these losses in float32 wherever autocast is on, on
every device, from the logits on: its losses raise their logits or
log-probabilities to float32 themselves, before they divide by a temperature
and before the log-softmax. How that compares with each reference:

* token_nll, label_smoothed_nll, confidence_penalty_nll, causal_lm_loss (all
  built on ``nll._log_softmax``) and vocab_parallel_cross_entropy: the
  reference is ``F.cross_entropy`` of the logits, which computes the same,
  in float32, on both devices.
* kd_loss, top_k_teacher, top_k_kd_loss, generalized_jsd and
  kd_cross_entropy: the reference computes the same on CUDA for a
  temperature of 1, whose division is exact. Otherwise it differs from
  coursekit's by the rounding of ``logits / temperature`` to the autocast
  dtype, and on the CPU also by that of its ``F.log_softmax`` (or
  ``F.softmax``) output; coursekit's value is the closer to the float64 one
  (``tests/test_losses_autocast.py`` measures both, on the CPU, in CUDA's
  order and in the CPU's, at a temperature of 3).
* ctc_loss, and its forward and backward tables: the reference computes the
  same under CPU autocast. Under CUDA autocast, or with no autocast,
  ``F.ctc_loss`` refuses half-precision log-probabilities (above): computing
  them here is the only working path, not a choice between two.

float32 everywhere is chosen because it is the closest to the float64
result, and because one loss that gives a different dtype on different
devices would surprise more than a stated difference from one reference on
one device. chunked_cross_entropy follows ``F.linear`` then
``F.cross_entropy`` instead. Autocast leaves float64 tensors alone in all
its lists, and so do these helpers.
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
