"""How policy-gradient methods for language models turn per-token losses into one number.

GRPO, DAPO and Dr. GRPO build on the same per-token surrogate loss for a group
of sampled responses (see :func:`clipped_surrogate`) and differ, among other
things, in how they average it over tokens and responses; that choice changes
which responses the update favours, and it is the choice this module covers:

* GRPO (Shao et al. 2024) averages each response over its own tokens, then
  over responses, so a token of a long response weighs less;
* DAPO (Yu et al. 2025) averages over all tokens of all responses;
* Dr. GRPO (Liu et al. 2025) divides the sum by a constant, the number of
  responses times the generation budget, which removes the length bias the
  per-response average introduces.

The other differences lie outside this function: DAPO also clips the ratio
higher above than below (``eps_high`` of :func:`clipped_surrogate`), drops the
KL term and filters and shapes its samples (dynamic sampling, overlong
filtering); Dr. GRPO also drops the division of the group advantage by its
standard deviation (the advantages are an input here).
"""

from __future__ import annotations

import math

import torch

from coursekit.losses._checks import (
    reads_values,
    require_choice,
    require_float,
    require_int,
    require_mask,
    require_num_items,
    require_same_device,
    require_same_devices,
)
from coursekit.losses.nll import _reduce_batch

POLICY_MODES = ("grpo", "bnpo", "dapo", "dr_grpo")


def policy_loss_aggregate(
    token_losses: torch.Tensor,
    mask: torch.Tensor | None,
    *,
    mode: str = "grpo",
    max_len: int | None = None,
    num_items_in_batch: torch.Tensor | int | None = None,
) -> torch.Tensor:
    """Aggregate per-token policy losses of ``G`` responses the GRPO, DAPO or Dr. GRPO way.

    With :math:`\\ell_{i,t}` the loss of token :math:`t` of response :math:`i`,
    :math:`m_{i,t}` its mask and :math:`|o_i| = \\sum_t m_{i,t}`:

    .. math::

        L^{\\text{grpo}} = \\frac{1}{G'} \\sum_{i : |o_i| > 0} \\frac{1}{|o_i|} \\sum_t m_{i,t}\\ell_{i,t},
        \\qquad
        L^{\\text{bnpo}} = \\frac{\\sum_{i,t} m_{i,t}\\ell_{i,t}}{\\sum_i |o_i|},
        \\qquad
        L^{\\text{dapo}} = \\frac{\\sum_{i,t} m_{i,t}\\ell_{i,t}}{N},
        \\qquad
        L^{\\text{dr\\_grpo}} = \\frac{\\sum_{i,t} m_{i,t}\\ell_{i,t}}{G \\cdot T_{\\max}}

    where :math:`G'` counts the non-empty responses, :math:`N` is
    ``num_items_in_batch`` (``"dapo"`` without it is ``"bnpo"``) and
    :math:`T_{\\max}` is ``max_len``. ``"grpo"`` equals ``batch_loss(...,
    "sequence_mean")`` and ``"bnpo"`` ``batch_loss(..., "token_mean")`` in value
    (the dtype is given under Returns).

    ``"bnpo"`` averages over the tokens of this micro-batch (TRL's name for it).
    DAPO's token mean is over the whole generation batch, which gradient
    accumulation splits into micro-batches: pass ``num_items_in_batch``, the
    number of response tokens in that whole batch, and every micro-batch's sum
    is divided by the same :math:`N`, so that the micro-batches' losses add up
    to the whole batch's token mean. (TRL's ``"dapo"`` divides by its
    ``num_items_in_batch`` times ``gradient_accumulation_steps /
    steps_per_generation``, divided by the number of processes; with one
    process and as many accumulation steps as steps per generation that is
    :math:`N`.) Like TRL, it takes :math:`N` as at least 1, so a count of 0
    (every token of the generation batch masked) gives a loss of 0.

    Where coursekit and TRL's ``GRPOTrainer`` (v1.16) differ:

    * ``"grpo"`` with an empty response (every token masked, as TRL's
      ``mask_truncated_completions`` makes them): here it is left out and the
      mean is over the :math:`G'` non-empty responses, as in
      :func:`batch_loss`'s ``"sequence_mean"``; TRL divides by
      ``mask.sum(-1).clamp(min=1)``, so the empty response counts as 0 and the
      mean is over all :math:`G`. The two differ by the factor :math:`G'/G`.
    * ``"dr_grpo"``: TRL's :math:`T_{\\max}` is the config value
      ``max_completion_length``, a constant, not the padded length of the batch
      (which ``max_len=None`` uses here): pass ``max_len=max_completion_length``
      to reproduce it.
    * TRL also divides ``"grpo"``, ``"bnpo"`` and ``"dr_grpo"`` by the number of
      gradient-accumulation steps; that scaling belongs to the training loop.
    * A masked position is dropped here (``torch.where``), so a non-finite
      loss there (``inf``, ``nan``) changes nothing; TRL multiplies by the
      mask, and ``inf * 0`` makes its loss ``nan``.

    When no token is unmasked, every mode gives 0 (with zero gradients); every
    mode except ``"dr_grpo"`` and ``"dapo"`` with ``num_items_in_batch`` also
    warns with a ``RuntimeWarning`` naming the mode, where reading the mask
    costs nothing (on the CPU; see :mod:`coursekit.losses`).

    Args:
        token_losses: per-token losses (any sign, e.g. :func:`clipped_surrogate`).
        mask: True (or 1) on response tokens, boolean or integer 0/1; ``None`` counts every token.
        mode: ``"grpo"``, ``"bnpo"``, ``"dapo"`` or ``"dr_grpo"``.
        max_len: :math:`T_{\\max}` for ``"dr_grpo"``, the generation budget;
            ``None`` uses the padded length ``T`` (1 when ``T = 0``, where the
            loss is 0). No response may be longer.
            Ignored by the other modes.
        num_items_in_batch: :math:`N` for ``"dapo"``: a Python number >= 0,
            or a one-element real tensor, whose value is not read (so that it
            may stay on the accelerator) and so not checked; a value below 1
            (a count of 0 included, and a negative tensor) counts as 1, as
            with TRL's ``clamp(min=1)``, and a ``nan`` tensor gives ``nan``.

    Returns:
        A scalar. ``"grpo"``, ``"bnpo"`` and ``"dapo"`` return it in the dtype
        of TRL's lines, whose counts ``mask.sum(...).clamp(min=1.0)`` are floats
        of the default dtype: ``token_losses``' dtype promoted with
        ``torch.get_default_dtype()`` (float32 for bfloat16 or float16 losses,
        float64 stays float64); the sums are taken in the losses' dtype and the
        counts held exactly up to 2**24, as TRL's float32 counts are. ``"dapo"`` with a ``num_items_in_batch`` tensor
        returns what TRL's ``sum / num_items_in_batch.clamp(min=1.0)`` returns
        (float64 for a float64 count), and with a Python number what an
        integer count tensor gives. ``"dr_grpo"`` returns ``token_losses``'
        dtype, as TRL's division by a Python int.

    Shapes:
        token_losses, mask: ``(G, T)`` (or ``(..., T)``: every leading index is a
        response); result: ``()``.

    Raises:
        TypeError: ``token_losses`` not float, ``mask`` neither boolean nor
            integer, ``max_len`` not an integer (``operator.index`` fails) or a bool, ``num_items_in_batch`` neither a
            number nor a one-element real tensor. ``mode`` not a str.
        ValueError: mismatched shapes, unknown ``mode``, ``max_len < 1`` or beyond int64, a
            response longer than ``max_len`` (checked where values are read),
            ``num_items_in_batch`` with a mode other than ``"dapo"``, or a
            Python number ``num_items_in_batch`` that is negative or not finite
            (a tensor is not read). A ``mask`` holding a value other than 0
            and 1 (checked where values are read; see :mod:`coursekit.losses`).
            Tensor arguments on two devices.

    Example:
        >>> losses = torch.tensor([[1., 1., 1., 1.], [3., 3., 0., 0.]])
        >>> mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
        >>> [round(policy_loss_aggregate(losses, mask, mode=m).item(), 4)
        ...  for m in ("grpo", "bnpo", "dapo", "dr_grpo")]
        [2.0, 1.6667, 1.6667, 1.25]
        >>> policy_loss_aggregate(losses, mask, mode="dr_grpo", max_len=10)   # 10 / (2 * 10)
        tensor(0.5000)
        >>> policy_loss_aggregate(losses, mask, mode="dapo", num_items_in_batch=20)  # 10 / 20
        tensor(0.5000)
    """
    require_float("token_losses", token_losses)
    require_choice("mode", mode, POLICY_MODES)
    if token_losses.dim() < 1:
        raise ValueError(f"token_losses must have a time axis (..., T), got shape {tuple(token_losses.shape)}")
    if mask is None:
        counted = torch.ones_like(token_losses, dtype=torch.bool)
    else:
        require_same_devices("token_losses", token_losses, mask=mask)
        counted = require_mask("mask", mask, token_losses.shape, "token_losses.shape")
    if num_items_in_batch is not None:
        if mode != "dapo":
            raise ValueError(f"num_items_in_batch applies to mode='dapo' only, got mode={mode!r}")
        # A count of 0 is a generation batch whose every token is masked; it may come as
        # a Python int (int(mask.sum())) as well as a tensor, and counts as 1 below.
        num_items_in_batch = require_num_items("num_items_in_batch", num_items_in_batch, allow_zero=True)
        if isinstance(num_items_in_batch, torch.Tensor):
            require_same_device("num_items_in_batch", num_items_in_batch, token_losses, "token_losses", cpu_scalar=True)
    # TRL's counts, mask.sum(...).clamp(min=1.0), are floats of the default dtype, and so are its means.
    mean_dtype = torch.promote_types(token_losses.dtype, torch.get_default_dtype())
    if mode == "grpo":
        return _reduce_batch(token_losses, counted, "sequence_mean", caller="policy_loss_aggregate",
                             called_with=f"mode={mode!r}", result_dtype=mean_dtype)
    if mode in ("bnpo", "dapo") and num_items_in_batch is None:
        return _reduce_batch(token_losses, counted, "token_mean", caller="policy_loss_aggregate",
                             called_with=f"mode={mode!r}", result_dtype=mean_dtype)
    masked_sum = torch.where(counted, token_losses, torch.zeros_like(token_losses)).sum()
    if mode == "dapo":
        # At least 1, as TRL clamps it: a generation batch whose every token is
        # masked (all truncated) has a count of 0, and its loss is then 0, not 0/0.
        if isinstance(num_items_in_batch, torch.Tensor):
            return masked_sum / num_items_in_batch.clamp(min=1.0)
        return masked_sum.to(mean_dtype) / max(num_items_in_batch, 1)

    if max_len is None:
        # An empty time axis (T = 0) has a masked sum of 0; T_max = 1 keeps the loss 0, as in the other modes.
        max_len = max(token_losses.shape[-1], 1)
    max_len = require_int("max_len", max_len, 1, expected="be >= 1", type_expected="an int or None")
    if counted.numel() and reads_values(counted):
        longest = int(counted.sum(dim=-1).max())
        if longest > max_len:
            raise ValueError(f"max_len must be >= the longest response ({longest} tokens), got {max_len}")
    num_responses = math.prod(token_losses.shape[:-1])
    return masked_sum / (max(num_responses, 1) * max_len)
