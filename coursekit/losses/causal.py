"""The causal language-modelling loss: every position predicts the next token.

A decoder reads the row :math:`u_1 \\dots u_{t}` and its logits at position
:math:`t` score the next token :math:`u_{t+1}`. The targets are therefore the
inputs shifted left by one, :math:`y_t = u_{t+1}`; doing the shift here, once, removes the classic
off-by-one error of training on the current token.
"""

from __future__ import annotations

import torch

from coursekit.losses._checks import (
    reads_values,
    require_choice,
    require_classes,
    require_class_indices,
    require_flag,
    require_float,
    require_int,
    require_mask,
    require_num_items,
    require_same_device,
    require_same_devices,
    require_shape,
    require_targets_in_range,
)
from coursekit.losses.nll import _reduce_batch, _token_nll

CAUSAL_REDUCTIONS = ("token_mean", "sequence_mean", "sum", "none")


def causal_lm_loss(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    *,
    loss_mask: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "token_mean",
    num_items_in_batch: torch.Tensor | int | None = None,
    upcast: bool = True,
) -> torch.Tensor:
    """Next-token negative log-likelihood of a batch of token sequences.

    A row :math:`u = (u_1, \\dots, u_T)` of ``input_ids`` (for instance a prompt
    :math:`x` followed by a response :math:`y`, :math:`u = (x, y)`) is read by
    the model, and position :math:`t` predicts :math:`u_{t+1}`. In this
    docstring a loss is indexed by the row position of the token it scores:
    :math:`\\ell_{t+1} = -\\log \\operatorname{softmax}(z_t)_{u_{t+1}}` for
    :math:`t = 1 \\dots T-1`, and :math:`m_{t+1}` is True when token
    :math:`u_{t+1}` is scored,

    .. math::

        L^{\\text{sum}} = \\sum_b \\sum_{t=2}^{T} m_{b,t}\\, \\ell_{b,t}, \\qquad
        L^{\\text{token\\_mean}} = \\frac{L^{\\text{sum}}}{N}

    where :math:`N` is the number of scored tokens, or ``num_items_in_batch``
    when given; ``"sequence_mean"`` as in :func:`batch_loss`. The logits of the
    last position predict nothing and are not used.

    ``loss_mask`` is given in ``input_ids`` coordinates: ``loss_mask[b, t]``
    says whether token ``input_ids[b, t]`` is scored (``loss_mask[..., 0]`` has
    no effect: the first token is never predicted). A token equal to
    ``ignore_index`` is never scored either. With ``loss_mask`` True on a
    response :math:`y` that follows a prompt :math:`x` (see
    :func:`response_mask`), ``reduction="none"`` gives each row's
    :math:`-\\log p_\\theta(y \\mid x)` and ``"sum"`` their total (for a prompt of at least one token).

    **Gradient accumulation.** The token mean of a micro-batch weighs its tokens
    by ``1 / (its own count)``, so summing the means of micro-batches of
    different lengths is not the token mean of the whole batch. Passing
    ``num_items_in_batch`` (the number of scored tokens in the whole batch, all
    micro-batches of one optimiser step) divides this micro-batch's sum by it
    instead, so the micro-batches' losses add up to the full batch's token
    mean. This is Hugging Face ``transformers``' ``ForCausalLMLoss`` with
    ``num_items_in_batch``, whose ``labels`` are ``input_ids`` with
    ``ignore_index`` wherever ``loss_mask`` is False.

    Differences from ``ForCausalLMLoss`` that remain:

    * precision: Hugging Face calls ``logits.float()``, which raises bfloat16
      and float16 to float32 but also lowers float64 to float32. Here
      ``upcast=True`` (the default) raises the half-precision dtypes to float32
      and leaves float32 and float64 alone; ``upcast=False`` computes in the
      logits' own dtype, as ``F.cross_entropy`` on them would (and returns that
      dtype), except under ``torch.autocast``, where it computes and returns
      float32 for half-precision and float32 logits, as ``F.cross_entropy``
      does under CPU autocast (under CUDA autocast ``F.cross_entropy`` rounds
      the log-probabilities of half-precision logits to their dtype first; see
      "Mixed precision" in :mod:`coursekit.losses`). float64 logits stay float64, with
      or without ``upcast``. With ``upcast=False`` on half-precision logits the
      per-token losses (before ``"none"``'s sum over each row) and their gradients are ``F.cross_entropy``'s,
      but the means add them as :func:`batch_loss` does (``Tensor.sum``, one
      rounding of the total) where PyTorch's CPU ``F.cross_entropy`` rounds in
      the half dtype as it adds, and PyTorch also rounds its count to the half
      dtype (above 256 tokens in bfloat16, above 2048 in float16): the two means
      can differ by several units in the last place (3.906 here and 3.969 there
      for 1000 bfloat16 tokens of 50 zero logits, 4 units; float64 gives 3.912),
      and their gradients, where the count is rounded, by about one.
    * no scored token and no ``num_items_in_batch``: Hugging Face's mean over
      nothing is ``nan``; here ``"token_mean"`` and ``"sequence_mean"`` give 0
      (with zero gradients) and a ``RuntimeWarning``, as :func:`batch_loss`.
      With ``num_items_in_batch`` both give 0, the micro-batch's true share.

    What lies at unscored positions (their logits, their token ids) never
    changes the value or the gradient, even if it is ``nan``.

    Args:
        logits: unnormalised next-token scores :math:`z`.
        input_ids: the token rows :math:`u` (a prompt :math:`x` and its response, or
            any text), which are also the targets.
        loss_mask: True (or 1) on the tokens whose prediction is scored, boolean
            or integer 0/1; ``None`` scores every token except the first.
        ignore_index: token value that is never scored (PyTorch's -100).
        reduction: ``"token_mean"`` (sum over scored tokens / their count),
            ``"sequence_mean"`` (mean over rows with a scored token of each row's
            mean), ``"sum"``, or ``"none"``: one sum per row, :math:`-\\log p`
            of the scored tokens, 0 for a row with none.
        num_items_in_batch: with ``"token_mean"`` only, the denominator
            :math:`N`: a Python number > 0, or a one-element real tensor, whose
            value is not read (so that it may stay on the accelerator) and so
            not checked.
        upcast: compute half-precision logits in float32 (see above); a
            Python or NumPy bool.

    Returns:
        A scalar, or shape ``input_ids.shape[:-1]`` for ``"none"``; float32 for
        half-precision logits with ``upcast`` or under ``torch.autocast``, else
        the logits' dtype (float64 logits give float64, under autocast too).
        A floating ``num_items_in_batch`` tensor takes part in that: the
        result has the dtype the summed loss and the count promote to
        (``torch.result_type``), as Hugging Face's ``loss / num_items_in_batch``
        does; a 0-d float64 count gives float64 for float32 or (upcast)
        bfloat16 logits, and bfloat16 logits with ``upcast=False`` and a float32
        count give float32. An integer tensor or a Python number leaves the
        dtype as stated first.

    Shapes:
        logits: ``(..., T, V)``; input_ids, loss_mask: ``(..., T)``;
        result: ``()`` or ``(...)`` for ``"none"``.

    Raises:
        TypeError: ``logits`` not float, ``input_ids`` not integer, ``loss_mask``
            neither boolean nor integer, ``num_items_in_batch`` neither a number
            nor a one-element real tensor, ``ignore_index`` not an integer (``operator.index`` fails) or a bool,
            ``upcast`` neither a Python nor a NumPy bool. ``reduction`` not a str.
        ValueError: mismatched shapes, an empty vocabulary (``V = 0``), ``ignore_index``
            beyond int64, a scored token outside ``[0, V)``, an
            unknown ``reduction``, ``num_items_in_batch`` with a reduction
            other than ``"token_mean"``, or a Python number
            ``num_items_in_batch`` that is not finite and > 0 (a tensor is not read).
            A ``loss_mask`` holding a value other than 0 and 1 (checked where
            values are read; see :mod:`coursekit.losses`). Tensor arguments on two devices.

    Example:
        >>> import math
        >>> # next-token probabilities 1/2, 1/4, 1/8 for tokens 1, 2, 3
        >>> probs = torch.tensor([[[.5, .5, 0, 0], [.25, .25, .25, .25],
        ...                        [.625, .125, .125, .125], [1, 0, 0, 0]]])
        >>> logits = probs.clamp_min(1e-30).log()
        >>> ids = torch.tensor([[0, 1, 2, 3]])
        >>> round(causal_lm_loss(logits, ids, reduction="sum").item(), 6)   # 6 ln 2
        4.158883
        >>> round(causal_lm_loss(logits, ids).item(), 6)                      # 2 ln 2 per token
        1.386294
        >>> # this micro-batch holds 3 of the 12 scored tokens of an optimiser step
        >>> round(causal_lm_loss(logits, ids, num_items_in_batch=12).item(), 6)  # 6 ln 2 / 12
        0.346574
        >>> causal_lm_loss(logits, ids, num_items_in_batch=torch.tensor(12.0, dtype=torch.float64)).dtype
        torch.float64
    """
    require_float("logits", logits)
    input_ids = require_class_indices("input_ids", input_ids)
    require_choice("reduction", reduction, CAUSAL_REDUCTIONS)
    if logits.dim() < 2:
        raise ValueError(f"logits must have shape (..., T, V), got shape {tuple(logits.shape)}")
    require_classes("logits", logits, "(..., T, V)")
    require_shape("input_ids", input_ids, logits.shape[:-1], "logits.shape[:-1]")
    require_same_devices("logits", logits, input_ids=input_ids, loss_mask=loss_mask)
    if num_items_in_batch is not None:
        if reduction != "token_mean":
            raise ValueError(
                f"num_items_in_batch applies to reduction='token_mean' only, got reduction={reduction!r}"
            )
        num_items_in_batch = require_num_items("num_items_in_batch", num_items_in_batch)
        if isinstance(num_items_in_batch, torch.Tensor):
            require_same_device("num_items_in_batch", num_items_in_batch, logits, "logits", cpu_scalar=True)
    upcast = require_flag("upcast", upcast)
    ignore_index = require_int("ignore_index", ignore_index, type_expected="an int (a target value)")
    scored = input_ids != ignore_index
    if loss_mask is not None:
        scored = scored & require_mask("loss_mask", loss_mask, input_ids.shape, "input_ids.shape")
    # book excerpt (chapter 2) starts: causal_lm_loss label shift
    targets = input_ids[..., 1:]
    counted = scored[..., 1:]
    # book excerpt (chapter 2) ends: causal_lm_loss label shift
    if reads_values(targets):  # the masked copy would cost a kernel where the check does not run
        require_targets_in_range("input_ids", torch.where(counted, targets, 0), logits.shape[-1], None)

    # Unscored positions are replaced by zeros, so whatever they held (even nan)
    # reaches neither the value nor, through torch.where, the gradient.
    predicting = logits[..., :-1, :]
    if upcast and predicting.dtype in (torch.float16, torch.bfloat16):
        predicting = predicting.float()
    predicting = torch.where(counted.unsqueeze(-1), predicting, torch.zeros_like(predicting))
    losses = _token_nll(predicting, targets, ~counted)
    if reduction == "none":
        return losses.sum(dim=-1)
    if num_items_in_batch is not None:
        return losses.sum() / num_items_in_batch
    return _reduce_batch(losses, counted, reduction, caller="causal_lm_loss")
