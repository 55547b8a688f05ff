"""How the losses follow ``torch.autocast``: the dtype each step computes in where autocast is on.

Autocast sorts operations into lists, one set for the CPU and one for CUDA
(and the other accelerators). A matrix product (``F.linear``) runs in the
autocast dtype (bfloat16 or float16) on both. For the references of the
losses here the lists differ:

* CUDA: the float32 lists ``AT_FORALL_FP32`` and ``AT_FORALL_FP32_SET_OPT_DTYPE``
  of the installed ``torch/include/ATen/autocast_mode.h`` hold
  ``nll_loss``, ``kl_div``, ``log_softmax``, ``softmax`` and ``logsumexp``,
  not ``cross_entropy_loss`` or ``ctc_loss``. ``log_softmax`` and
  ``softmax`` are "set_opt_dtype" operations: the header's policy is "If
  the user has explicitly specified a dtype, respect it. Otherwise, set it
  to the autocast type" (float32). ``F.log_softmax`` called from Python
  passes no dtype, so every ``F.kl_div(F.log_softmax(...), ...)`` expression
  computes in float32. ``F.cross_entropy`` is different: with no autocast
  kernel of its own (the dispatcher has none registered for
  ``aten::cross_entropy_loss`` under ``AutocastCUDA``, and one under
  ``AutocastCPU``), its composite kernel runs, and that kernel calls
  ``log_softmax`` with the input's own dtype given explicitly. So under
  CUDA autocast the log-probabilities of half-precision logits stay in the
  half dtype, rounded there, and only ``nll_loss`` then runs in float32: the
  result is float32, the rounding is the half dtype's. The registrations
  and that explicit dtype are checked on the CPU
  (``tests/test_losses_autocast.py`` records the call); the CUDA result
  itself follows from them and has not been run on a GPU
  (``tests/test_losses_cuda.py`` pins it where one is). ``F.ctc_loss`` is
  not autocast on CUDA, and it has no float16 or bfloat16 kernel on any
  device: ``ctc_loss_gpu`` in PyTorch's
  ``aten/src/ATen/native/cuda/LossCTC.cu`` dispatches on
  ``AT_DISPATCH_FLOATING_TYPES`` (float and double), as the CPU kernel does,
  and the installed torch's own OpInfo for ``nn.functional.ctc_loss``
  (``torch/testing/_internal/common_methods_invocations.py``) declares
  ``dtypes=floating_types()`` with no CUDA dtypes of its own. Given
  half-precision log-probabilities outside CPU autocast, it raises
  ``NotImplementedError``.
* CPU (measured with torch 2.13 under bfloat16 autocast): ``F.cross_entropy``,
  ``F.nll_loss``, ``F.kl_div`` and ``F.ctc_loss`` return float32 (CPU autocast
  casts the inputs of ``cross_entropy_loss`` as a whole, log-softmax
  included, and of ``ctc_loss`` to float32), while ``F.log_softmax``,
  ``F.softmax`` and ``torch.logsumexp`` keep bfloat16. So the expressions
  that take ``F.log_softmax`` before ``F.kl_div`` (kd_loss's reference, TRL's
  ``generalized_jsd_loss``) round their log-probabilities to bfloat16 and
  only then compute in float32, and kd_cross_entropy's reference takes
  bfloat16 ``F.softmax`` targets.
* Both: a division is on no list, so a reference's ``logits / temperature``
  stays in the autocast dtype, rounded before the log-softmax raises it.
* CUDA only: ``exp``, ``expm1``, ``log`` and ``pow`` are on the float32 list
  and ``sum`` and ``cumsum`` on the "set_opt_dtype" one, while CPU autocast
  leaves all six in the input's dtype. So under CUDA autocast a sum of
  half-precision losses (the ``"sum"`` of ``sequence_loss``, ``batch_loss``,
  ``dpo_loss`` and ``simpo_loss``, ``policy_loss_aggregate``'s ``"dr_grpo"``)
  is computed and returned in float32, as are the ratios of
  ``clipped_surrogate``, ``kl_penalty``'s ``"k2"`` (a ``pow``) and ``"k3"``
  (an ``expm1``), and ``mrt_risk``; the totals behind the means are float32
  too (a float16 row sum no longer overflows at 65520), and the means are
  rounded back to the losses' dtype.
  The dtypes the functions' docstrings give for half-precision input are
  those outside autocast and under CPU autocast (read from the header; not
  run on a GPU).

coursekit computes these losses in float32 wherever autocast is on, on
every device, from the logits on: its losses raise their logits or
log-probabilities to float32 themselves, before they divide by a temperature
and before the log-softmax. How that compares with each reference:

* token_nll, label_smoothed_nll, confidence_penalty_nll, causal_lm_loss (all
  built on ``nll._log_softmax``) and vocab_parallel_cross_entropy: the
  reference is ``F.cross_entropy`` of the logits. Under CPU autocast it
  computes the same, in float32. Under CUDA autocast it rounds its
  log-probabilities to the autocast dtype before ``nll_loss`` (above), so
  coursekit's value differs from it by that rounding and is the closer to
  the float64 one (emulated on the CPU for logits of standard deviation 3
  over 1000 classes: differences of the order of 5e-3 per token for
  float16 and 5e-2 for bfloat16; not run on a GPU). The dtype, float32, is the same on both.
* kd_loss, top_k_teacher, top_k_kd_loss and generalized_jsd: the reference
  computes the same on CUDA for a temperature of 1, whose division is
  exact. Otherwise it differs from coursekit's by the rounding of
  ``logits / temperature`` to the autocast dtype, and on the CPU also by
  that of its ``F.log_softmax`` (or ``F.softmax``) output; coursekit's
  value is the closer to the float64 one (``tests/test_losses_autocast.py``
  measures both, on the CPU, in CUDA's order and in the CPU's, at a
  temperature of 3).
* kd_cross_entropy: its reference ``F.cross_entropy(student_logits /
  temperature, F.softmax(teacher_logits / temperature, dim=-1))`` differs from
  coursekit's as above (its divisions, and its ``F.softmax`` targets on the
  CPU), and on CUDA, at every temperature, also by its log-probabilities,
  which ``F.cross_entropy`` keeps in the autocast dtype there; coursekit's
  value is the closer to the float64 one.
* ctc_loss, and its forward and backward tables: the reference computes the
  same under CPU autocast. Under CUDA autocast, or with no autocast,
  ``F.ctc_loss`` refuses half-precision log-probabilities (above): computing
  them here is the only working path, not a choice between two.

float32 everywhere is chosen because it is the closest to the float64
result, and because one loss that gives a different dtype or precision on
different devices would surprise more than a stated difference from one
reference on one device. chunked_cross_entropy follows ``F.linear`` then
``F.cross_entropy`` as CPU autocast computes them (logits in the autocast
dtype, the loss from them in float32), on CUDA too, except that in
bfloat16 it rounds its shifted logits and their exponentials to bfloat16
before their float32 sum (see its docstring). Autocast leaves float64
tensors alone in all its lists, and so do these helpers.
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
